/**
 * Python that binds libc's directory calls through ctypes, for tests that need what readdir(3)
 * itself gives (d_type, telldir, seekdir), which ls and find may replace with stats.
 */
export const PY_LIBC_DIR = `import ctypes
class Dirent(ctypes.Structure):
    _fields_ = [('ino', ctypes.c_uint64), ('off', ctypes.c_int64), ('reclen', ctypes.c_ushort), ('type', ctypes.c_ubyte), ('name', ctypes.c_char * 256)]
libc = ctypes.CDLL(None)
libc.opendir.argtypes = [ctypes.c_char_p]
libc.opendir.restype = ctypes.c_void_p
libc.readdir.argtypes = [ctypes.c_void_p]
libc.readdir.restype = ctypes.POINTER(Dirent)
for f in ('closedir', 'rewinddir', 'telldir'): getattr(libc, f).argtypes = [ctypes.c_void_p]
libc.telldir.restype = ctypes.c_long
libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]`
