/*
 * On the JavaScript thread: a queued message becomes a call of the handler of its
 * operation, handler(request, ...arguments), where request is { id, uid, gid, pid }.
 */
#include <errno.h>
#include <stdlib.h>
#include "lp.h"

const char *const lp_handler_names[LP_NOPS] = {
	[LP_LOOKUP] = "lookup",
	[LP_GETATTR] = "getattr",
	[LP_SETATTR] = "setattr",
	[LP_READLINK] = "readlink",
	[LP_MKNOD] = "mknod",
	[LP_MKDIR] = "mkdir",
	[LP_UNLINK] = "unlink",
	[LP_RMDIR] = "rmdir",
	[LP_SYMLINK] = "symlink",
	[LP_RENAME] = "rename",
	[LP_LINK] = "link",
	[LP_OPEN] = "open",
	[LP_READ] = "read",
	[LP_WRITE] = "write",
	[LP_FLUSH] = "flush",
	[LP_RELEASE] = "release",
	[LP_FSYNC] = "fsync",
	[LP_OPENDIR] = "opendir",
	[LP_READDIR] = "readdir",
	[LP_RELEASEDIR] = "releasedir",
	[LP_FSYNCDIR] = "fsyncdir",
	[LP_STATFS] = "statfs",
	[LP_ACCESS] = "access",
	[LP_CREATE] = "create",
	[LP_INIT] = "init",
	[LP_INTERRUPT] = "interrupt",
	[LP_ENDED] = "ended",
};

/* Inode numbers (FIDs), handles and offsets stay far below 2^53. */
static napi_value num(napi_env env, double v)
{
	napi_value x;
	napi_create_double(env, v, &x);
	return x;
}

static napi_value str(napi_env env, const char *s)
{
	napi_value x;
	napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &x);
	return x;
}

static void set(napi_env env, napi_value obj, const char *key, double v)
{
	napi_set_named_property(env, obj, key, num(env, v));
}

static void set_bool(napi_env env, napi_value obj, const char *key)
{
	napi_value x;
	napi_get_boolean(env, true, &x);
	napi_set_named_property(env, obj, key, x);
}

static napi_value request_object(napi_env env, struct lp_req *r)
{
	napi_value o;
	napi_create_object(env, &o);
	set(env, o, "id", (double)r->id);
	set(env, o, "uid", r->uid);
	set(env, o, "gid", r->gid);
	set(env, o, "pid", r->pid);
	return o;
}

/* The fields a setattr sets, named as llite's SetAttr names them (plus fh when it has one). */
static napi_value setattr_object(napi_env env, struct lp_req *r)
{
	const struct lp_setattr *a = &r->set;
	napi_value o;

	napi_create_object(env, &o);
	if (a->mode_set)
		set(env, o, "mode", a->mode);
	if (a->uid_set)
		set(env, o, "uid", a->uid);
	if (a->gid_set)
		set(env, o, "gid", a->gid);
	if (a->size_set)
		set(env, o, "size", (double)a->size);
	if (a->atime_set)
		set(env, o, "atime", a->atime_ms);
	if (a->mtime_set)
		set(env, o, "mtime", a->mtime_ms);
	if (a->times_now)
		set_bool(env, o, "timesNow");
	if (r->has_fh)
		set(env, o, "fh", (double)r->fh);
	return o;
}

/* A write this large hands its receive buffer to JavaScript rather than copying the data out. */
#define LP_ZERO_COPY_MIN (128 * 1024)

/* What a zero-copy Buffer gives back when it is collected. */
struct lp_lent {
	struct lp_pool *pool;
	void *mem;
};

static void lent_finalize(napi_env env, void *data, void *hint)
{
	struct lp_lent *l = hint;
	(void)env;
	(void)data;
	lp_pool_put(l->pool, l->mem);
	lp_pool_unref(l->pool);
	free(l);
}

/*
 * The data of a write as a Buffer JavaScript keeps. A large one is the receive buffer itself
 * (the write-back cache and the replay list hold it until committed; it returns to the pool
 * when collected). A small one is copied, so a 4 KiB write does not hold 1 MiB for seconds.
 */
static napi_value write_data(napi_env env, struct lp_session *s, struct lp_req *r)
{
	napi_value b;
	struct lp_lent *l = r->size >= LP_ZERO_COPY_MIN ? malloc(sizeof(*l)) : NULL;

	if (l) {
		l->pool = s->pool;
		l->mem = r->buf;
		lp_pool_ref(s->pool);
		if (napi_create_external_buffer(env, r->size, (void *)r->data, lent_finalize, l, &b) == napi_ok) {
			r->buf = NULL;
			r->data = NULL;
			return b;
		}
		lp_pool_unref(s->pool);
		free(l);
	}
	napi_status st = napi_create_buffer_copy(env, r->size, r->data, NULL, &b);

	lp_pool_put(s->pool, r->buf);
	r->buf = NULL;
	r->data = NULL;
	return st == napi_ok ? b : NULL;
}

/* Arguments after the request object; returns how many, or -1 if they could not be made. */
static int request_args(napi_env env, struct lp_session *s, struct lp_req *r, napi_value *a)
{
	switch (r->op) {
	case LP_LOOKUP:
	case LP_UNLINK:
	case LP_RMDIR:
		a[0] = num(env, r->ino);
		a[1] = str(env, r->name);
		return 2;
	case LP_GETATTR:
	case LP_READLINK:
	case LP_STATFS:
		a[0] = num(env, r->ino);
		return 1;
	case LP_SETATTR:
		a[0] = num(env, r->ino);
		a[1] = setattr_object(env, r);
		return 2;
	case LP_MKNOD:
		a[0] = num(env, r->ino);
		a[1] = str(env, r->name);
		a[2] = num(env, r->mode);
		a[3] = num(env, r->rdev);
		return 4;
	case LP_MKDIR:
		a[0] = num(env, r->ino);
		a[1] = str(env, r->name);
		a[2] = num(env, r->mode);
		return 3;
	case LP_CREATE:
		a[0] = num(env, r->ino);
		a[1] = str(env, r->name);
		a[2] = num(env, r->mode);
		a[3] = num(env, r->flags);
		return 4;
	case LP_SYMLINK:
		a[0] = num(env, r->ino);
		a[1] = str(env, r->name);
		a[2] = str(env, r->name2);
		return 3;
	case LP_RENAME:
		a[0] = num(env, r->ino);
		a[1] = str(env, r->name);
		a[2] = num(env, r->ino2);
		a[3] = str(env, r->name2);
		a[4] = num(env, r->flags);
		return 5;
	case LP_LINK:
		a[0] = num(env, r->ino);
		a[1] = num(env, r->ino2);
		a[2] = str(env, r->name);
		return 3;
	case LP_OPEN:
	case LP_OPENDIR:
	case LP_ACCESS:
		a[0] = num(env, r->ino);
		a[1] = num(env, r->flags);
		return 2;
	case LP_READ:
		a[0] = num(env, (double)r->fh);
		a[1] = num(env, (double)r->off);
		a[2] = num(env, (double)r->size);
		return 3;
	case LP_WRITE:
		a[0] = num(env, (double)r->fh);
		a[1] = num(env, (double)r->off);
		a[2] = write_data(env, s, r);
		return a[2] ? 3 : -1;
	case LP_READDIR:
		a[0] = num(env, r->ino);
		a[1] = num(env, (double)r->fh);
		a[2] = num(env, (double)r->off);
		return 3;
	case LP_FLUSH:
	case LP_RELEASE:
	case LP_RELEASEDIR:
		a[0] = num(env, (double)r->fh);
		return 1;
	case LP_FSYNC:
	case LP_FSYNCDIR:
		a[0] = num(env, (double)r->fh);
		a[1] = num(env, r->flags);
		return 2;
	default:
		return -1;
	}
}

/* What the kernel and libfuse agreed on, for the log. */
static napi_value init_info(napi_env env, const struct fuse_conn_info *c)
{
	napi_value o;
	napi_create_object(env, &o);
	set(env, o, "protoMajor", c->proto_major);
	set(env, o, "protoMinor", c->proto_minor);
	set(env, o, "maxWrite", c->max_write);
	set(env, o, "maxRead", c->max_read);
	set(env, o, "maxReadahead", c->max_readahead);
	set(env, o, "maxBackground", c->max_background);
	set(env, o, "want", c->want);
	return o;
}

static napi_status call(napi_env env, struct lp_session *s, enum lp_op op, size_t argc, napi_value *argv)
{
	napi_value fn, recv;
	napi_get_reference_value(env, s->handlers[op], &fn);
	napi_get_reference_value(env, s->recv, &recv);
	return napi_call_function(env, recv, fn, argc, argv, NULL);
}

/* Handlers catch their own errors; this is the last guard: fail the request, report loudly. */
static void handler_threw(napi_env env, struct lp_session *s, struct lp_req *r)
{
	napi_value e;
	napi_get_and_clear_last_exception(env, &e);
	if (r && lp_take(s, r->id) == r) {
		fuse_reply_err(r->req, EIO);
		lp_req_free(s, r);
	}
	napi_fatal_exception(env, e);
}

void lp_call_js(napi_env env, napi_value js_cb, void *context, void *data)
{
	struct lp_session *s = context;
	uint64_t word = (uintptr_t)data;
	unsigned kind = word & 0xff;
	uint64_t id = word >> 8;
	napi_value argv[7];
	struct lp_req *r = NULL;
	int argc;

	(void)js_cb;
	if (!env || !s->se)
		return; /* torn down, or unmounted: nothing left to deliver */
	if (kind == LP_MSG_REQUEST) {
		/* Not found: drained at unmount meanwhile. Found: only this thread may free it. */
		r = lp_find(s, id);
		if (!r)
			return;
		argv[0] = request_object(env, r);
		argc = request_args(env, s, r, argv + 1);
		if (argc < 0) {
			lp_take(s, id);
			fuse_reply_err(r->req, ENOMEM);
			lp_req_free(s, r);
			return;
		}
		argc++;
		kind = r->op;
	} else if (kind == LP_INIT) {
		argv[0] = init_info(env, &s->conn);
		argc = 1;
	} else if (kind == LP_INTERRUPT) {
		argv[0] = num(env, (double)id);
		argc = 1;
	} else {
		argc = 0;
	}
	if (call(env, s, (enum lp_op)kind, (size_t)argc, argv) == napi_pending_exception)
		handler_threw(env, s, r);
}

/*
 * Messages collected while a batch was read on this thread (readers.c), delivered as the
 * thread-safe function would deliver them, in a callback scope: promise jobs and next ticks
 * run when it closes, as after any call from the event loop into JavaScript.
 */
void lp_deliver(struct lp_session *s, const uint64_t *words, size_t n)
{
	napi_env env = s->env;
	napi_handle_scope hs;
	napi_callback_scope cs;
	napi_value resource;

	if (!n)
		return;
	napi_open_handle_scope(env, &hs);
	napi_get_reference_value(env, s->resource, &resource);
	napi_open_callback_scope(env, resource, s->actx, &cs);
	for (size_t i = 0; i < n; i++)
		lp_call_js(env, NULL, s, (void *)(uintptr_t)words[i]);
	napi_close_callback_scope(env, cs);
	napi_close_handle_scope(env, hs);
}
