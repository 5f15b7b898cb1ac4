/*
 * lproxy's binding of libfuse3's low-level API to Node.
 *
 * Requests are read from /dev/fuse on the JavaScript thread, polled by Node's event loop
 * (readers.c), and handed to their JavaScript handlers in the same turn of the loop (or, when
 * posted from another thread, through a thread-safe function's queue); JavaScript answers
 * later through the reply functions. Nothing waits for an answer, so a request that
 * waits on a dead target holds nothing but its own small record.
 */
#ifndef LP_H
#define LP_H

#include <fuse_lowlevel.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>

/* Largest read and write request: libfuse derives the kernel's max_pages from max_write. */
#define LP_MAX_IO (1024 * 1024)
/* Room for the request header in front of the data of a write. */
#define LP_HEADER_ROOM 4096

/* Operations handed to JavaScript; each has a handler of the name in deliver.c. */
enum lp_op {
	LP_LOOKUP,
	LP_GETATTR,
	LP_SETATTR,
	LP_READLINK,
	LP_MKNOD,
	LP_MKDIR,
	LP_UNLINK,
	LP_RMDIR,
	LP_SYMLINK,
	LP_RENAME,
	LP_LINK,
	LP_OPEN,
	LP_READ,
	LP_WRITE,
	LP_FLUSH,
	LP_RELEASE,
	LP_FSYNC,
	LP_OPENDIR,
	LP_READDIR,
	LP_RELEASEDIR,
	LP_FSYNCDIR,
	LP_STATFS,
	LP_ACCESS,
	LP_CREATE,
	/* Events of the session rather than requests. */
	LP_INIT,
	LP_INTERRUPT,
	LP_ENDED,
	LP_NOPS
};

/* setattr: which fields are set (times are wall-clock ms, "now" already resolved). */
struct lp_setattr {
	int mode_set, uid_set, gid_set, size_set, atime_set, mtime_set;
	/* Every time set is "now" (UTIME_NOW): write permission suffices for it, not ownership. */
	int times_now;
	uint32_t mode;
	uint32_t uid, gid;
	int64_t size;
	double atime_ms, mtime_ms;
};

/*
 * A request waiting for JavaScript's answer. It lives in the session's pending table from
 * the moment libfuse hands it over until JavaScript replies (or the session ends), and is
 * only ever freed on the JavaScript thread.
 */
struct lp_req {
	struct lp_req *next; /* chain in the pending table */
	uint64_t id;
	fuse_req_t req;
	enum lp_op op;
	int posted;          /* JavaScript has been (or is being) told of it */
	int interrupted;     /* an interrupt came before it was posted */
	uint32_t uid, gid, pid;
	fuse_ino_t ino;      /* the inode, or the directory of a name */
	fuse_ino_t ino2;     /* rename, link: the new directory */
	uint64_t fh;
	int has_fh;
	int64_t off;
	size_t size;
	uint32_t mode;
	uint32_t rdev;       /* mknod: the device number (the kernel's new_encode_dev) */
	int flags;           /* open flags, rename flags, datasync, access mask */
	struct lp_setattr set;
	void *buf;           /* write: the receive buffer holding the data, until copied */
	const char *data;    /* write: the data, within buf */
	const char *name;    /* names live in strs */
	const char *name2;
	char strs[];
};

/* Receive buffers, recycled (pool.c). */
struct lp_pool {
	pthread_mutex_t lock;
	void *free[32];
	int n;
	int refs;
	size_t size;
};

/* Inodes whose cached pages the kernel is to drop, and the thread that tells it (inval.c). */
struct lp_inval {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	int started;
	int stop;
	int done_fd; /* eventfd: readable once the thread has stopped */
	fuse_ino_t *inos;
	size_t n, cap;
};

/* Messages a batch of requests read on the JavaScript thread may post: each request, an interrupt for each, an event or two. */
#define LP_READ_BATCH 32
#define LP_DIRECT_MAX (2 * LP_READ_BATCH + 4)

struct lp_session {
	struct fuse_session *se;
	napi_threadsafe_function tsfn;
	napi_ref handlers[LP_NOPS];
	napi_ref recv;
	double attr_timeout, entry_timeout;
	unsigned max_background;
	struct fuse_conn_info conn; /* as negotiated, for the init event */
	int init_replied; /* INIT answered: once the reply is sent, JavaScript is told */

	/* Pending requests by id (chained hash). */
	pthread_mutex_t lock;
	struct lp_req **buckets;
	size_t nbuckets, count;
	uint64_t next_id;

	struct lp_pool *pool;
	struct uv_poll_s *poll; /* the device in Node's event loop, until unmount (readers.c) */
	/*
	 * Messages posted while the JavaScript thread reads a batch (under lock): delivered by
	 * direct calls once the batch is read, not through the thread-safe function (readers.c).
	 */
	int collecting;
	size_t ndirect;
	uint64_t direct[LP_DIRECT_MAX];
	napi_env env;               /* the JavaScript thread's, once reading began */
	napi_async_context actx;    /* the context direct deliveries run in */
	napi_ref resource;
	void *rbuf;             /* the receive buffer the next request is read into */
	int stopping; /* unmount asked for (JavaScript thread only) */
	int refusing; /* unmounting: requests are answered ENOTCONN, never handed to JavaScript (under lock) */
	struct lp_inval inval;
	int ended;    /* the kernel ended the session */
};

/* pending.c */
int lp_pending_init(struct lp_session *s);
void lp_pending_destroy(struct lp_session *s);
struct lp_req *lp_req_new(fuse_req_t req, enum lp_op op, fuse_ino_t ino, const char *name, const char *name2);
void lp_req_free(struct lp_session *s, struct lp_req *r);
void lp_submit(struct lp_session *s, struct lp_req *r);
struct lp_req *lp_find(struct lp_session *s, uint64_t id);
struct lp_req *lp_take(struct lp_session *s, uint64_t id);
void lp_drain(struct lp_session *s);
void lp_post_event(struct lp_session *s, enum lp_op op);
/* Stop collecting, and take what was collected (at most LP_DIRECT_MAX words). */
size_t lp_take_direct(struct lp_session *s, uint64_t *words);
void lp_refuse(struct lp_session *s);

/*
 * Messages on the thread-safe function's queue are words, never pointers, so that nothing
 * queued can dangle: a request id (looked up again when the message is delivered) or an
 * event with the id it concerns.
 */
#define LP_MSG_REQUEST 0xff
_Static_assert(sizeof(void *) == sizeof(uint64_t), "messages are 64-bit words");

static inline void *lp_msg(unsigned kind, uint64_t id)
{
	return (void *)(uintptr_t)(id << 8 | kind);
}

/* inval.c */
int lp_inval_start(struct lp_session *s);
int lp_inval_queue(struct lp_session *s, fuse_ino_t ino);
void lp_inval_stop(struct lp_session *s);

/* pool.c */
struct lp_pool *lp_pool_new(size_t size);
void *lp_pool_get(struct lp_pool *p);
void lp_pool_put(struct lp_pool *p, void *mem);
void lp_pool_ref(struct lp_pool *p);
void lp_pool_unref(struct lp_pool *p);

/* ops.c */
extern const struct fuse_lowlevel_ops lp_ops;

/* readers.c (JavaScript thread) */
int lp_start_reading(struct lp_session *s, napi_env env);
void lp_stop_reading(struct lp_session *s);
/* Read and process requests, without JavaScript, until done_fd is readable (unmount). */
void lp_serve_until(struct lp_session *s, int done_fd);
/* The receive buffer of the request being processed; a write takes it over. */
void *lp_reader_take_buffer(void);

/* deliver.c */
void lp_call_js(napi_env env, napi_value js_cb, void *context, void *data);
void lp_deliver(struct lp_session *s, const uint64_t *words, size_t n);
extern const char *const lp_handler_names[LP_NOPS];

/* reply.c */
napi_status lp_define_replies(napi_env env, napi_value exports);

/* addon.c: the session JavaScript talks to (one mount per process), or NULL. */
struct lp_session *lp_current(napi_env env);

#endif
