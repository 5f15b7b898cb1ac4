/*
 * Reading requests from /dev/fuse, on the JavaScript thread: the device is polled by Node's
 * own event loop, and libfuse decodes each request into the callbacks of ops.c, which only
 * queue it for JavaScript. A request thus wakes one thread, the one that answers it. A reader
 * thread in between cost a second wake-up per request, from one CPU to another: on two
 * cores that was most of a round trip through the mount.
 *
 * Reading never blocks (the device is non-blocking), and a turn of the loop reads a bounded
 * batch, so sockets are served between requests. The batch's requests are then handed to
 * their handlers by direct calls, in the same turn: through the thread-safe function each
 * cost a write to its eventfd, a turn of the loop and a read back. At unmount the JavaScript
 * thread serves the device synchronously until the page invalidations have stopped
 * (lp_serve_until).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include "lp.h"

/* The receive buffer of the request being processed: a write takes it over. */
static struct {
	void *mem;
	int taken;
} current;

void *lp_reader_take_buffer(void)
{
	current.taken = 1;
	return current.mem;
}

/* The kernel ended the session (unmounted from outside, or the connection aborted). */
static void session_ended(struct lp_session *s)
{
	fuse_session_exit(s->se);
	if (!__atomic_exchange_n(&s->ended, 1, __ATOMIC_SEQ_CST))
		lp_post_event(s, LP_ENDED);
}

/* Read and process one request: 1 if one was, 0 if none is waiting, -1 once the session is over. */
static int read_one(struct lp_session *s)
{
	int fd = fuse_session_fd(s->se);

	if (fuse_session_exited(s->se))
		return -1;
	if (!s->rbuf && !(s->rbuf = lp_pool_get(s->pool))) {
		fuse_log(FUSE_LOG_ERR, "lproxy: no memory for a request buffer\n");
		session_ended(s);
		return -1;
	}
	ssize_t n = read(fd, s->rbuf, s->pool->size);
	if (n < 0) {
		/* ENOENT: interrupted before it was read. */
		if (errno == ENOENT || errno == EINTR)
			return 1;
		if (errno == EAGAIN)
			return 0;
		if (errno != ENODEV)
			fuse_log(FUSE_LOG_ERR, "lproxy: reading /dev/fuse: %s\n", strerror(errno));
		session_ended(s);
		return -1;
	}
	struct fuse_buf fb = { .size = (size_t)n, .mem = s->rbuf };
	current.mem = s->rbuf;
	current.taken = 0;
	fuse_session_process_buf(s->se, &fb);
	if (current.taken)
		s->rbuf = NULL;
	if (__atomic_exchange_n(&s->init_replied, 0, __ATOMIC_SEQ_CST))
		lp_post_event(s, LP_INIT);
	return 1;
}

static void stop_polling(struct lp_session *s);

static void on_readable(uv_poll_t *h, int status, int events)
{
	struct lp_session *s = h->data;
	uint64_t words[LP_DIRECT_MAX];
	int r = 1;

	(void)status; /* an error shows as the read's */
	(void)events;
	pthread_mutex_lock(&s->lock);
	s->collecting = 1;
	pthread_mutex_unlock(&s->lock);
	for (int i = 0; i < LP_READ_BATCH && r > 0; i++)
		r = read_one(s);
	size_t n = lp_take_direct(s, words);
	if (r < 0)
		stop_polling(s);
	lp_deliver(s, words, n);
}

static void free_handle(uv_handle_t *h)
{
	free(h);
}

static void stop_polling(struct lp_session *s)
{
	if (!s->poll)
		return;
	uv_poll_stop(s->poll);
	uv_close((uv_handle_t *)s->poll, free_handle);
	s->poll = NULL;
}

int lp_start_reading(struct lp_session *s, napi_env env)
{
	struct uv_loop_s *loop;
	uv_poll_t *h;
	int err;

	if (napi_get_uv_event_loop(env, &loop) != napi_ok)
		return EINVAL;
	if (!s->actx) {
		napi_value resource, name;
		if (napi_create_object(env, &resource) != napi_ok || napi_create_reference(env, resource, 1, &s->resource) != napi_ok ||
		    napi_create_string_utf8(env, "lproxy-fuse", NAPI_AUTO_LENGTH, &name) != napi_ok ||
		    napi_async_init(env, resource, name, &s->actx) != napi_ok)
			return ENOMEM;
	}
	s->env = env;
	if (!(h = calloc(1, sizeof(*h))))
		return ENOMEM;
	/* uv_poll_init makes the descriptor non-blocking. */
	if ((err = uv_poll_init(loop, h, fuse_session_fd(s->se)))) {
		free(h);
		return -err;
	}
	h->data = s;
	if ((err = uv_poll_start(h, UV_READABLE, on_readable))) {
		uv_close((uv_handle_t *)h, free_handle);
		return -err;
	}
	s->poll = h;
	return 0;
}

void lp_stop_reading(struct lp_session *s)
{
	stop_polling(s);
	if (s->rbuf)
		lp_pool_put(s->pool, s->rbuf);
	s->rbuf = NULL;
}

void lp_serve_until(struct lp_session *s, int done_fd)
{
	struct pollfd pfd[2] = { { .fd = fuse_session_fd(s->se), .events = POLLIN }, { .fd = done_fd, .events = POLLIN } };

	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fuse_log(FUSE_LOG_ERR, "lproxy: poll of /dev/fuse: %s\n", strerror(errno));
			return;
		}
		if (pfd[1].revents)
			return;
		if (pfd[0].revents) {
			int r;
			while ((r = read_one(s)) > 0)
				;
			/* The device is gone: nothing waits on it any more, only the done signal to come. */
			if (r < 0)
				pfd[0].fd = -1;
		}
	}
}
