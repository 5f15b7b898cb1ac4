/*
 * Replies, called by JavaScript on its own thread (libfuse lets any thread reply). Each
 * takes the request id first and returns whether the request was still pending: false for
 * one already answered (with EINTR after an interrupt) or dropped at unmount, whose late
 * result is then simply not sent.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include "lp.h"

#define MAX_ARGS 5

struct answer {
	napi_env env;
	struct lp_session *s;
	struct lp_req *r; /* NULL: nothing to answer */
	napi_value argv[MAX_ARGS];
};

static napi_value boolean(napi_env env, int v)
{
	napi_value b;
	napi_get_boolean(env, v, &b);
	return b;
}

/* The arguments, and the request they answer taken out of the pending table. */
static int begin(napi_env env, napi_callback_info info, size_t want, struct answer *a)
{
	size_t argc = MAX_ARGS;
	int64_t id;

	a->env = env;
	a->r = NULL;
	napi_get_cb_info(env, info, &argc, a->argv, NULL, NULL);
	if (argc < want || napi_get_value_int64(env, a->argv[0], &id) != napi_ok) {
		napi_throw_type_error(env, NULL, "lproxy_fuse: a reply takes the request id and its result");
		return 0;
	}
	a->s = lp_current(env);
	if (a->s)
		a->r = lp_take(a->s, (uint64_t)id);
	return a->r != NULL;
}

static napi_value end(struct answer *a)
{
	lp_req_free(a->s, a->r);
	return boolean(a->env, 1);
}

static napi_value not_pending(napi_env env)
{
	return boolean(env, 0);
}

/*
 * A double into [lo, hi], NaN as lo: converting a double outside an integer type's range is
 * undefined behaviour in C, and JavaScript may hand over NaN, an infinity or 1e300.
 */
static double clamp(double d, double lo, double hi)
{
	if (!(d >= lo))
		return lo;
	return d > hi ? hi : d;
}

/* Every count, id and size here fits in 2^53 (JavaScript's exact integers); 32-bit ids in theirs. */
#define MAX_EXACT 9007199254740992.0
#define MAX_U32 4294967295.0

static double get_num(napi_env env, napi_value obj, const char *key)
{
	napi_value v;
	double d = 0;
	if (napi_get_named_property(env, obj, key, &v) == napi_ok)
		napi_get_value_double(env, v, &d);
	return d;
}

static double get_count(napi_env env, napi_value obj, const char *key, double max)
{
	return clamp(get_num(env, obj, key), 0, max);
}

/* JavaScript's Date range, +-8.64e15 ms: its seconds fit a 64-bit time_t. */
#define MAX_TIME_MS 8.64e15

static struct timespec ts_of(double ms)
{
	ms = clamp(ms, -MAX_TIME_MS, MAX_TIME_MS);
	double sec = floor(ms / 1e3);
	long nsec = (long)clamp((ms - sec * 1e3) * 1e6, 0, 999999999);
	return (struct timespec){ .tv_sec = (time_t)sec, .tv_nsec = nsec };
}

/* llite's PosixStat (times in ms) as a struct stat. */
static void stat_of(napi_env env, napi_value o, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = (ino_t)get_count(env, o, "ino", MAX_EXACT);
	st->st_mode = (mode_t)get_count(env, o, "mode", MAX_U32);
	st->st_nlink = (nlink_t)get_count(env, o, "nlink", MAX_U32);
	st->st_rdev = (dev_t)get_count(env, o, "rdev", MAX_U32);
	st->st_uid = (uid_t)get_count(env, o, "uid", MAX_U32);
	st->st_gid = (gid_t)get_count(env, o, "gid", MAX_U32);
	st->st_size = (off_t)get_count(env, o, "size", MAX_EXACT);
	st->st_blocks = (blkcnt_t)get_count(env, o, "blocks", MAX_EXACT);
	st->st_blksize = (blksize_t)get_count(env, o, "blksize", MAX_U32 / 2);
	st->st_atim = ts_of(get_num(env, o, "atime"));
	st->st_mtim = ts_of(get_num(env, o, "mtime"));
	st->st_ctim = ts_of(get_num(env, o, "ctime"));
}

/* Generation 0: FIDs are never reused. */
static void entry_of(struct answer *a, napi_value o, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	stat_of(a->env, o, &e->attr);
	e->ino = e->attr.st_ino;
	e->attr_timeout = a->s->attr_timeout;
	e->entry_timeout = a->s->entry_timeout;
}

/*
 * Open handles keep no page cache from earlier opens: coherence is close-to-open. A handle
 * opened `direct` (JavaScript's choice) bypasses the page cache for its I/O; one opened
 * `noflush` is closed without a FLUSH request (it has nothing to write back).
 */
static struct fuse_file_info file_of(napi_env env, napi_value fh, napi_value direct, napi_value noflush)
{
	struct fuse_file_info fi;
	double d = 0;
	bool dio = false, nf = false;
	memset(&fi, 0, sizeof(fi));
	napi_get_value_double(env, fh, &d);
	fi.fh = (uint64_t)clamp(d, 0, MAX_EXACT);
	napi_get_value_bool(env, direct, &dio);
	napi_get_value_bool(env, noflush, &nf);
	fi.direct_io = dio;
	fi.noflush = nf;
	return fi;
}

/* replyErr(id, errno) */
static napi_value reply_err(napi_env env, napi_callback_info info)
{
	struct answer a;
	int32_t err = EIO;
	if (!begin(env, info, 2, &a))
		return not_pending(env);
	napi_get_value_int32(env, a.argv[1], &err);
	fuse_reply_err(a.r->req, err);
	return end(&a);
}

/* replyEntry(id, stat) */
static napi_value reply_entry(napi_env env, napi_callback_info info)
{
	struct answer a;
	struct fuse_entry_param e;
	if (!begin(env, info, 2, &a))
		return not_pending(env);
	entry_of(&a, a.argv[1], &e);
	fuse_reply_entry(a.r->req, &e);
	return end(&a);
}

/* replyCreate(id, stat, fh, direct, noflush) */
static napi_value reply_create(napi_env env, napi_callback_info info)
{
	struct answer a;
	struct fuse_entry_param e;
	if (!begin(env, info, 3, &a))
		return not_pending(env);
	entry_of(&a, a.argv[1], &e);
	struct fuse_file_info fi = file_of(env, a.argv[2], a.argv[3], a.argv[4]);
	fuse_reply_create(a.r->req, &e, &fi);
	return end(&a);
}

/* replyAttr(id, stat) */
static napi_value reply_attr(napi_env env, napi_callback_info info)
{
	struct answer a;
	struct stat st;
	if (!begin(env, info, 2, &a))
		return not_pending(env);
	stat_of(env, a.argv[1], &st);
	fuse_reply_attr(a.r->req, &st, a.s->attr_timeout);
	return end(&a);
}

/* replyReadlink(id, target) */
static napi_value reply_readlink(napi_env env, napi_callback_info info)
{
	struct answer a;
	size_t len = 0;
	if (!begin(env, info, 2, &a))
		return not_pending(env);
	if (napi_get_value_string_utf8(env, a.argv[1], NULL, 0, &len) != napi_ok) {
		fuse_reply_err(a.r->req, EIO);
		return end(&a);
	}
	char *target = malloc(len + 1);
	if (target) {
		napi_get_value_string_utf8(env, a.argv[1], target, len + 1, &len);
		fuse_reply_readlink(a.r->req, target);
		free(target);
	} else {
		fuse_reply_err(a.r->req, ENOMEM);
	}
	return end(&a);
}

/* replyOpen(id, fh, direct, noflush): open and opendir */
static napi_value reply_open(napi_env env, napi_callback_info info)
{
	struct answer a;
	if (!begin(env, info, 2, &a))
		return not_pending(env);
	struct fuse_file_info fi = file_of(env, a.argv[1], a.argv[2], a.argv[3]);
	fuse_reply_open(a.r->req, &fi);
	return end(&a);
}

/* replyWrite(id, count) */
static napi_value reply_write(napi_env env, napi_callback_info info)
{
	struct answer a;
	double n = 0;
	if (!begin(env, info, 2, &a))
		return not_pending(env);
	napi_get_value_double(env, a.argv[1], &n);
	fuse_reply_write(a.r->req, (size_t)clamp(n, 0, MAX_U32));
	return end(&a);
}

/* Read data arrive in many pieces (socket chunks); more than this many are not expected. */
#define MAX_PIECES 1024

/* replyBuf(id, buffers): read data, sent from the Buffers themselves with one writev */
static napi_value reply_buf(napi_env env, napi_callback_info info)
{
	struct answer a;
	uint32_t n = 0;
	if (!begin(env, info, 2, &a))
		return not_pending(env);
	struct iovec *iov = NULL;
	int ok = napi_get_array_length(env, a.argv[1], &n) == napi_ok && n <= MAX_PIECES;
	if (ok && n)
		ok = (iov = calloc(n, sizeof(*iov))) != NULL;
	for (uint32_t i = 0; ok && i < n; i++) {
		napi_value b;
		ok = napi_get_element(env, a.argv[1], i, &b) == napi_ok &&
		     napi_get_buffer_info(env, b, &iov[i].iov_base, &iov[i].iov_len) == napi_ok;
	}
	if (ok && n)
		fuse_reply_iov(a.r->req, iov, (int)n);
	else if (ok)
		fuse_reply_buf(a.r->req, NULL, 0);
	else
		fuse_reply_err(a.r->req, EIO);
	free(iov);
	return end(&a);
}

/* replyStatfs(id, statfs) */
static napi_value reply_statfs(napi_env env, napi_callback_info info)
{
	struct answer a;
	struct statvfs sv;
	if (!begin(env, info, 2, &a))
		return not_pending(env);
	napi_value o = a.argv[1];
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = (unsigned long)get_count(env, o, "bsize", MAX_U32);
	sv.f_frsize = (unsigned long)get_count(env, o, "frsize", MAX_U32);
	sv.f_blocks = (fsblkcnt_t)get_count(env, o, "blocks", MAX_EXACT);
	sv.f_bfree = (fsblkcnt_t)get_count(env, o, "bfree", MAX_EXACT);
	sv.f_bavail = (fsblkcnt_t)get_count(env, o, "bavail", MAX_EXACT);
	sv.f_files = (fsfilcnt_t)get_count(env, o, "files", MAX_EXACT);
	sv.f_ffree = (fsfilcnt_t)get_count(env, o, "ffree", MAX_EXACT);
	sv.f_favail = (fsfilcnt_t)get_count(env, o, "favail", MAX_EXACT);
	sv.f_namemax = (unsigned long)get_count(env, o, "namemax", MAX_U32);
	fuse_reply_statfs(a.r->req, &sv);
	return end(&a);
}

static napi_value element(napi_env env, napi_value array, uint32_t i)
{
	napi_value v;
	napi_get_element(env, array, i, &v);
	return v;
}

/*
 * replyDir(id, names, inos, types, offs): directory entries as parallel arrays (types are
 * S_IFMT bits), each with the offset a readdir resumes after it at; the caller gives those
 * that follow the request's offset. As many as the kernel's buffer holds are sent.
 */
static napi_value reply_dir(napi_env env, napi_callback_info info)
{
	struct answer a;
	uint32_t n = 0;
	if (!begin(env, info, 5, &a))
		return not_pending(env);
	size_t size = a.r->size, used = 0;
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(a.r->req, ENOMEM);
		return end(&a);
	}
	napi_get_array_length(env, a.argv[1], &n);
	for (uint32_t i = 0; i < n; i++) {
		char name[1024];
		double ino = 0, type = 0, off = 0;
		/* An entry that is not a string is left out (name would be uninitialised). */
		if (napi_get_value_string_utf8(env, element(env, a.argv[1], i), name, sizeof(name), NULL) != napi_ok)
			continue;
		napi_get_value_double(env, element(env, a.argv[2], i), &ino);
		napi_get_value_double(env, element(env, a.argv[3], i), &type);
		napi_get_value_double(env, element(env, a.argv[4], i), &off);
		struct stat st = { .st_ino = (ino_t)clamp(ino, 0, MAX_EXACT), .st_mode = (mode_t)clamp(type, 0, MAX_U32) };
		size_t len = fuse_add_direntry(a.r->req, buf + used, size - used, name, &st, (off_t)clamp(off, 1, MAX_EXACT));
		if (len > size - used)
			break;
		used += len;
	}
	fuse_reply_buf(a.r->req, buf, used);
	free(buf);
	return end(&a);
}

napi_status lp_define_replies(napi_env env, napi_value exports)
{
	const napi_property_descriptor fns[] = {
		{ "replyErr", NULL, reply_err, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "replyEntry", NULL, reply_entry, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "replyCreate", NULL, reply_create, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "replyAttr", NULL, reply_attr, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "replyReadlink", NULL, reply_readlink, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "replyOpen", NULL, reply_open, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "replyWrite", NULL, reply_write, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "replyBuf", NULL, reply_buf, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "replyStatfs", NULL, reply_statfs, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "replyDir", NULL, reply_dir, NULL, NULL, NULL, napi_enumerable, NULL },
	};
	return napi_define_properties(env, exports, sizeof(fns) / sizeof(fns[0]), fns);
}
