{
  "targets": [
    {
      "target_name": "lproxy_fuse",
      "sources": [
        "src/addon.c",
        "src/deliver.c",
        "src/inval.c",
        "src/ops.c",
        "src/pending.c",
        "src/pool.c",
        "src/readers.c",
        "src/reply.c"
      ],
      "defines": ["FUSE_USE_VERSION=312", "NAPI_VERSION=8"],
      "cflags": ["<!@(pkg-config --cflags fuse3)", "-std=gnu11", "-Wall", "-Wextra"],
      "libraries": ["<!@(pkg-config --libs fuse3)", "-lm"]
    },
    {
      "target_name": "lproxy_notify",
      "sources": ["src/notify.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra"]
    }
  ]
}
