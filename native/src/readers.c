/*
 * Reader threads: read requests from /dev/fuse and let libfuse decode them into the
 * callbacks of ops.c, which only queue them for JavaScript. A reader therefore never waits
 * for anything but the device, and two are plenty; more would only contend for it.
 *
 * The device is non-blocking and polled together with an eventfd, so that unmount can stop
 * the readers before libfuse closes the device (a thread still reading a closed, and then
 * reused, descriptor would read someone else's file).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "lp.h"

/* What the calling reader is processing: a write takes its buffer over. */
static __thread struct {
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

static void *reader_main(void *arg)
{
	struct lp_session *s = arg;
	int fd = fuse_session_fd(s->se);
	struct pollfd pfd[2] = { { .fd = fd, .events = POLLIN }, { .fd = s->wake_fd, .events = POLLIN } };
	void *mem = NULL;

	while (!fuse_session_exited(s->se)) {
		if (!mem && !(mem = lp_pool_get(s->pool))) {
			fuse_log(FUSE_LOG_ERR, "lproxy: no memory for a request buffer\n");
			break;
		}
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fuse_log(FUSE_LOG_ERR, "lproxy: poll of /dev/fuse: %s\n", strerror(errno));
			break;
		}
		if (pfd[1].revents)
			break;
		ssize_t n = read(fd, mem, s->pool->size);
		if (n < 0) {
			/* EAGAIN: another reader took it; ENOENT: interrupted before it was read. */
			if (errno == EAGAIN || errno == ENOENT || errno == EINTR)
				continue;
			if (errno != ENODEV)
				fuse_log(FUSE_LOG_ERR, "lproxy: reading /dev/fuse: %s\n", strerror(errno));
			session_ended(s);
			break;
		}
		struct fuse_buf fb = { .size = (size_t)n, .mem = mem };
		current.mem = mem;
		current.taken = 0;
		fuse_session_process_buf(s->se, &fb);
		if (current.taken)
			mem = NULL;
		if (__atomic_load_n(&s->init_replied, __ATOMIC_RELAXED) && __atomic_exchange_n(&s->init_replied, 0, __ATOMIC_SEQ_CST))
			lp_post_event(s, LP_INIT);
	}
	if (mem)
		lp_pool_put(s->pool, mem);
	return NULL;
}

int lp_start_readers(struct lp_session *s, int n)
{
	int fd = fuse_session_fd(s->se);
	sigset_t all, old;
	int err = 0;

	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		return errno;
	s->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (s->wake_fd < 0)
		return errno;
	s->readers = calloc(n, sizeof(*s->readers));
	if (!s->readers)
		return ENOMEM;
	/* Signals are the JavaScript thread's business: readers inherit a full mask. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (s->nreaders = 0; s->nreaders < n; s->nreaders++) {
		err = pthread_create(&s->readers[s->nreaders], NULL, reader_main, s);
		if (err)
			break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		lp_stop_readers(s);
	return err;
}

void lp_stop_readers(struct lp_session *s)
{
	uint64_t one = 1;

	fuse_session_exit(s->se);
	if (write(s->wake_fd, &one, sizeof(one)) != sizeof(one))
		fuse_log(FUSE_LOG_ERR, "lproxy: waking the readers: %s\n", strerror(errno));
	for (int i = 0; i < s->nreaders; i++)
		pthread_join(s->readers[i], NULL);
	s->nreaders = 0;
	free(s->readers);
	s->readers = NULL;
	close(s->wake_fd);
	s->wake_fd = -1;
}
