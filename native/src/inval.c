/*
 * Dropping the kernel's cached pages of an inode (its data was lost with an OST), off the
 * JavaScript thread. fuse_lowlevel_notify_inval_inode with a non-negative offset makes the
 * kernel lock each page to drop it, and a page under a pending read stays locked until
 * JavaScript answers that read: sent from the JavaScript thread it could wait for itself.
 * One worker thread of the session sends these notifications instead.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "lp.h"

static void *inval_main(void *arg)
{
	struct lp_session *s = arg;
	struct lp_inval *q = &s->inval;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (!q->n && !q->stop)
			pthread_cond_wait(&q->cond, &q->lock);
		if (q->stop)
			break;
		fuse_ino_t ino = q->inos[--q->n];
		pthread_mutex_unlock(&q->lock);
		/* ENOENT: the kernel holds nothing of that inode; ENODEV: the session has ended. */
		int err = fuse_lowlevel_notify_inval_inode(s->se, ino, 0, 0);
		if (err && err != -ENOENT && err != -ENODEV)
			fuse_log(FUSE_LOG_ERR, "lproxy: dropping the cached pages of inode %lu: %s\n", (unsigned long)ino, strerror(-err));
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	uint64_t one = 1;
	if (write(q->done_fd, &one, sizeof(one)) != sizeof(one))
		fuse_log(FUSE_LOG_ERR, "lproxy: telling that the invalidations stopped: %s\n", strerror(errno));
	return NULL;
}

int lp_inval_start(struct lp_session *s)
{
	struct lp_inval *q = &s->inval;
	sigset_t all, old;
	int err;

	if ((err = pthread_mutex_init(&q->lock, NULL)))
		return err;
	if ((err = pthread_cond_init(&q->cond, NULL))) {
		pthread_mutex_destroy(&q->lock);
		return err;
	}
	if ((q->done_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
		err = errno;
		pthread_cond_destroy(&q->cond);
		pthread_mutex_destroy(&q->lock);
		return err;
	}
	/* Signals are the JavaScript thread's business. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&q->thread, NULL, inval_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		close(q->done_fd);
		pthread_cond_destroy(&q->cond);
		pthread_mutex_destroy(&q->lock);
		return err;
	}
	q->started = 1;
	return 0;
}

/* Queue an inode (JavaScript thread); an inode already queued is not queued twice. */
int lp_inval_queue(struct lp_session *s, fuse_ino_t ino)
{
	struct lp_inval *q = &s->inval;
	int err = 0;

	pthread_mutex_lock(&q->lock);
	size_t i = 0;
	while (i < q->n && q->inos[i] != ino)
		i++;
	if (i == q->n) {
		if (q->n == q->cap) {
			size_t cap = q->cap ? q->cap * 2 : 64;
			fuse_ino_t *inos = realloc(q->inos, cap * sizeof(*inos));
			if (inos) {
				q->inos = inos;
				q->cap = cap;
			}
		}
		if (q->n < q->cap)
			q->inos[q->n++] = ino;
		else
			err = ENOMEM;
	}
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	return err;
}

/*
 * Stop the worker (JavaScript thread, the session still open). A notification in progress
 * may wait for a read to be answered: lp_refuse has answered every request, and this thread
 * reads and answers new ones at once until the worker has stopped, so it ends. What is
 * still queued no longer matters.
 */
void lp_inval_stop(struct lp_session *s)
{
	struct lp_inval *q = &s->inval;

	if (!q->started)
		return;
	pthread_mutex_lock(&q->lock);
	q->stop = 1;
	pthread_cond_signal(&q->cond);
	pthread_mutex_unlock(&q->lock);
	lp_serve_until(s, q->done_fd);
	pthread_join(q->thread, NULL);
	close(q->done_fd);
	q->started = 0;
	free(q->inos);
	q->inos = NULL;
	q->n = q->cap = 0;
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->lock);
}
