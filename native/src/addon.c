/*
 * The module: mount(mountpoint, options, config, handlers), unmount(), invalidateAttr(ino) and
 * invalidateData(ino),
 * plus the reply functions of reply.c. One mount per process (lproxy runs a daemon per mountpoint).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "lp.h"

struct lp_addon {
	struct lp_session *current;
};

struct lp_session *lp_current(napi_env env)
{
	struct lp_addon *addon = NULL;
	napi_get_instance_data(env, (void **)&addon);
	return addon ? addon->current : NULL;
}

/* libfuse explains its failures through its log: keep the last line for the error thrown. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_log[512];

static void capture_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
	(void)level;
	pthread_mutex_lock(&log_lock);
	vsnprintf(last_log, sizeof(last_log), fmt, ap);
	last_log[strcspn(last_log, "\n")] = '\0';
	pthread_mutex_unlock(&log_lock);
}

static void throw_failure(napi_env env, const char *what, int err)
{
	char msg[800];
	pthread_mutex_lock(&log_lock);
	if (last_log[0])
		snprintf(msg, sizeof(msg), "%s: %s", what, last_log);
	else
		snprintf(msg, sizeof(msg), "%s: %s", what, strerror(err ? err : EIO));
	last_log[0] = '\0';
	pthread_mutex_unlock(&log_lock);
	napi_throw_error(env, NULL, msg);
}

/* The thread-safe function is gone: nothing can deliver to the session any more. */
static void session_finalize(napi_env env, void *data, void *hint)
{
	struct lp_session *s = data;
	(void)hint;
	for (int i = 0; i < LP_NOPS; i++)
		if (s->handlers[i])
			napi_delete_reference(env, s->handlers[i]);
	if (s->recv)
		napi_delete_reference(env, s->recv);
	if (s->actx)
		napi_async_destroy(env, s->actx);
	if (s->resource)
		napi_delete_reference(env, s->resource);
	if (s->pool)
		lp_pool_unref(s->pool);
	lp_pending_destroy(s);
	free(s);
}

static int get_string(napi_env env, napi_value v, char *buf, size_t size)
{
	size_t len = 0;
	return napi_get_value_string_utf8(env, v, buf, size, &len) == napi_ok && len < size - 1;
}

static double config_num(napi_env env, napi_value config, const char *key, double dflt)
{
	napi_value v;
	double d;
	if (napi_get_named_property(env, config, key, &v) != napi_ok || napi_get_value_double(env, v, &d) != napi_ok)
		return dflt;
	return d;
}

/* A session with its handlers and thread-safe function, not mounted yet; NULL after throwing. */
static struct lp_session *new_session(napi_env env, napi_value config, napi_value handlers)
{
	struct lp_session *s = calloc(1, sizeof(*s));
	napi_value name;

	if (!s || lp_pending_init(s) || !(s->pool = lp_pool_new(LP_MAX_IO + LP_HEADER_ROOM))) {
		free(s);
		napi_throw_error(env, NULL, "lproxy_fuse: out of memory");
		return NULL;
	}
	s->attr_timeout = config_num(env, config, "attrTimeout", 1);
	s->entry_timeout = config_num(env, config, "entryTimeout", 1);
	s->max_background = (unsigned)config_num(env, config, "maxBackground", 12);
	napi_create_reference(env, handlers, 1, &s->recv);
	for (int i = 0; i < LP_NOPS; i++) {
		napi_value fn;
		napi_valuetype t = napi_undefined;
		napi_get_named_property(env, handlers, lp_handler_names[i], &fn);
		napi_typeof(env, fn, &t);
		if (t != napi_function) {
			char msg[128];
			snprintf(msg, sizeof(msg), "lproxy_fuse: handler '%s' is not a function", lp_handler_names[i]);
			napi_throw_type_error(env, NULL, msg);
			session_finalize(env, s, NULL);
			return NULL;
		}
		napi_create_reference(env, fn, 1, &s->handlers[i]);
	}
	napi_create_string_utf8(env, "lproxy-fuse", NAPI_AUTO_LENGTH, &name);
	if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, s, session_finalize, s, lp_call_js, &s->tsfn) != napi_ok) {
		session_finalize(env, s, NULL);
		napi_throw_error(env, NULL, "lproxy_fuse: cannot create the thread-safe function");
		return NULL;
	}
	return s;
}

/* Undo new_session (and fuse_session_new): the finalizer frees the rest. */
static void discard(struct lp_session *s)
{
	s->stopping = 1;
	if (s->se)
		fuse_session_destroy(s->se);
	s->se = NULL;
	napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
}

/*
 * mount(mountpoint, options, { attrTimeout, entryTimeout, maxBackground }, handlers)
 * options: the -o string (fsname=..., allow_other, ...); max_read is added here.
 */
static napi_value js_mount(napi_env env, napi_callback_info info)
{
	struct lp_addon *addon = NULL;
	size_t argc = 4;
	napi_value argv[4];
	char mountpoint[4096], options[2048], opt_arg[2200];

	napi_get_instance_data(env, (void **)&addon);
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 4 || !get_string(env, argv[0], mountpoint, sizeof(mountpoint)) || !get_string(env, argv[1], options, sizeof(options))) {
		napi_throw_type_error(env, NULL, "lproxy_fuse.mount(mountpoint, options, config, handlers)");
		return NULL;
	}
	if (addon->current) {
		napi_throw_error(env, NULL, "lproxy_fuse: this process already serves a mount");
		return NULL;
	}
	struct lp_session *s = new_session(env, argv[2], argv[3]);
	if (!s)
		return NULL;

	snprintf(opt_arg, sizeof(opt_arg), "%s%smax_read=%d", options, options[0] ? "," : "", LP_MAX_IO);
	char *args_v[] = { "lproxy", "-o", opt_arg, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, args_v);
	s->se = fuse_session_new(&args, &lp_ops, sizeof(lp_ops), s);
	fuse_opt_free_args(&args);
	if (!s->se) {
		discard(s);
		throw_failure(env, "fuse_session_new", EINVAL);
		return NULL;
	}
	if (fuse_session_mount(s->se, mountpoint) != 0) {
		int err = errno;
		discard(s);
		throw_failure(env, "mount", err);
		return NULL;
	}
	int err = lp_start_reading(s, env);
	if (!err && (err = lp_inval_start(s)))
		lp_stop_reading(s);
	if (err) {
		fuse_session_unmount(s->se);
		discard(s);
		throw_failure(env, "starting to serve the FUSE device", err);
		return NULL;
	}
	addon->current = s;
	return NULL;
}

/*
 * unmount(): answer what is pending ENOTCONN, stop the page invalidations (which may wait for
 * those answers) and the reading of the device, detach the mount (lazily: open files keep it until closed,
 * answering ENOTCONN). Late replies then find nothing.
 */
static napi_value js_unmount(napi_env env, napi_callback_info info)
{
	struct lp_addon *addon = NULL;
	(void)info;
	napi_get_instance_data(env, (void **)&addon);
	struct lp_session *s = addon->current;
	if (!s)
		return NULL;
	addon->current = NULL;
	s->stopping = 1; /* before fuse_session_destroy calls lp_destroy */
	lp_refuse(s);
	lp_inval_stop(s);
	lp_stop_reading(s);
	fuse_session_unmount(s->se);
	lp_drain(s);
	discard(s);
	return NULL;
}

/* The inode argument of an invalidation call; throws a TypeError naming `usage` (0) when there is none. */
static fuse_ino_t ino_arg(napi_env env, napi_callback_info info, const char *usage)
{
	size_t argc = 1;
	napi_value argv[1];
	double ino = 0;

	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 1 || napi_get_value_double(env, argv[0], &ino) != napi_ok || !(ino >= 1 && ino <= 9007199254740991.0)) {
		napi_throw_type_error(env, NULL, usage);
		return 0;
	}
	return (fuse_ino_t)ino;
}

/*
 * invalidateAttr(ino): the kernel forgets the attributes it cached of an inode (a negative
 * offset leaves its pages alone, so no page lock is taken: safe while a request is pending).
 */
static napi_value js_invalidate_attr(napi_env env, napi_callback_info info)
{
	struct lp_session *s = lp_current(env);
	fuse_ino_t ino = ino_arg(env, info, "lproxy_fuse.invalidateAttr(ino)");

	if (ino && s)
		fuse_lowlevel_notify_inval_inode(s->se, ino, -1, 0);
	return NULL;
}

/*
 * invalidateData(ino): the kernel drops the pages it cached of an inode, so that even a handle
 * opened before asks again. Queued for the session's invalidation thread (inval.c): dropping a
 * page waits for a pending read of it, which only the JS thread answers, so it is never done here.
 */
static napi_value js_invalidate_data(napi_env env, napi_callback_info info)
{
	struct lp_session *s = lp_current(env);
	fuse_ino_t ino = ino_arg(env, info, "lproxy_fuse.invalidateData(ino)");

	if (ino && s && lp_inval_queue(s, ino))
		napi_throw_error(env, NULL, "lproxy_fuse.invalidateData: out of memory");
	return NULL;
}

static void addon_finalize(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	free(data);
}

static napi_value init(napi_env env, napi_value exports)
{
	struct lp_addon *addon = calloc(1, sizeof(*addon));
	const napi_property_descriptor fns[] = {
		{ "mount", NULL, js_mount, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "unmount", NULL, js_unmount, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "invalidateAttr", NULL, js_invalidate_attr, NULL, NULL, NULL, napi_enumerable, NULL },
		{ "invalidateData", NULL, js_invalidate_data, NULL, NULL, NULL, napi_enumerable, NULL },
	};

	if (!addon || napi_set_instance_data(env, addon, addon_finalize, NULL) != napi_ok) {
		free(addon);
		napi_throw_error(env, NULL, "lproxy_fuse: out of memory");
		return NULL;
	}
	fuse_set_log_func(capture_log);
	napi_define_properties(env, exports, sizeof(fns) / sizeof(fns[0]), fns);
	lp_define_replies(env, exports);
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
