/*
 * The pending table: requests handed to JavaScript and not answered yet, by id.
 *
 * JavaScript knows requests only by id; a reply takes the request out of the table, so a
 * second answer (a late result after an interrupt was answered with EINTR) finds nothing
 * and is refused instead of reaching libfuse twice. Requests are freed only on the
 * JavaScript thread (reply, or drain at unmount), which is what lets deliver.c use a
 * request it looked up without holding the lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "lp.h"

int lp_pending_init(struct lp_session *s)
{
	s->nbuckets = 256;
	s->count = 0;
	s->next_id = 0;
	s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
	if (!s->buckets)
		return ENOMEM;
	return pthread_mutex_init(&s->lock, NULL);
}

void lp_pending_destroy(struct lp_session *s)
{
	free(s->buckets);
	s->buckets = NULL;
	pthread_mutex_destroy(&s->lock);
}

static struct lp_req **slot(struct lp_session *s, uint64_t id)
{
	/* Ids are sequential, so their low bits spread them evenly. */
	return &s->buckets[id & (s->nbuckets - 1)];
}

/* Double the buckets when chains grow past one on average (lock held). */
static void grow(struct lp_session *s)
{
	size_t n = s->nbuckets * 2;
	struct lp_req **b = calloc(n, sizeof(*b));

	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct lp_req *r = s->buckets[i];
		while (r) {
			struct lp_req *next = r->next;
			r->next = b[r->id & (n - 1)];
			b[r->id & (n - 1)] = r;
			r = next;
		}
	}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
}

static struct lp_req *unlink_locked(struct lp_session *s, uint64_t id)
{
	for (struct lp_req **p = slot(s, id); *p; p = &(*p)->next) {
		struct lp_req *r = *p;
		if (r->id == id) {
			*p = r->next;
			s->count--;
			return r;
		}
	}
	return NULL;
}

static struct lp_req *find_locked(struct lp_session *s, uint64_t id)
{
	struct lp_req *r = *slot(s, id);
	while (r && r->id != id)
		r = r->next;
	return r;
}

struct lp_req *lp_req_new(fuse_req_t req, enum lp_op op, fuse_ino_t ino, const char *name, const char *name2)
{
	size_t n1 = name ? strlen(name) + 1 : 0;
	size_t n2 = name2 ? strlen(name2) + 1 : 0;
	struct lp_req *r = calloc(1, sizeof(*r) + n1 + n2);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);

	if (!r)
		return NULL;
	r->req = req;
	r->op = op;
	r->ino = ino;
	r->uid = ctx->uid;
	r->gid = ctx->gid;
	r->pid = ctx->pid;
	/* Names point into the receive buffer, which the next request overwrites. */
	if (name)
		r->name = memcpy(r->strs, name, n1);
	if (name2)
		r->name2 = memcpy(r->strs + n1, name2, n2);
	return r;
}

void lp_req_free(struct lp_session *s, struct lp_req *r)
{
	if (r->buf)
		lp_pool_put(s->pool, r->buf);
	free(r);
}

static napi_status post_locked(struct lp_session *s, unsigned kind, uint64_t id)
{
	if (s->collecting) {
		if (s->ndirect < LP_DIRECT_MAX) {
			s->direct[s->ndirect++] = (uintptr_t)lp_msg(kind, id);
			return napi_ok;
		}
		/* Full: this and what follows take the queue, delivered after what was collected, in order. */
		s->collecting = 0;
	}
	/* The queue is unbounded: a non-blocking call never waits. */
	return napi_call_threadsafe_function(s->tsfn, lp_msg(kind, id), napi_tsfn_nonblocking);
}

size_t lp_take_direct(struct lp_session *s, uint64_t *words)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->ndirect;
	memcpy(words, s->direct, n * sizeof(*words));
	s->ndirect = 0;
	s->collecting = 0;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/*
 * libfuse calls this when the kernel interrupts a request (the caller got a signal), from
 * the processing of the INTERRUPT read from the device, or at once from fuse_req_interrupt_func if it
 * came first. The request may have been answered meanwhile: it is looked up by id.
 */
static void on_interrupt(fuse_req_t req, void *data)
{
	struct lp_session *s = fuse_req_userdata(req);
	uint64_t id = (uintptr_t)data;

	pthread_mutex_lock(&s->lock);
	struct lp_req *r = find_locked(s, id);
	if (r) {
		if (r->posted)
			post_locked(s, LP_INTERRUPT, id);
		else
			r->interrupted = 1; /* lp_submit posts it right after the request */
	}
	pthread_mutex_unlock(&s->lock);
}

/* Hand a request to JavaScript (queued for its handler). It is answered later by a reply function. */
void lp_submit(struct lp_session *s, struct lp_req *r)
{
	pthread_mutex_lock(&s->lock);
	if (s->refusing) {
		pthread_mutex_unlock(&s->lock);
		fuse_reply_err(r->req, ENOTCONN);
		lp_req_free(s, r);
		return;
	}
	r->id = ++s->next_id;
	r->next = *slot(s, r->id);
	*slot(s, r->id) = r;
	if (++s->count > s->nbuckets)
		grow(s);
	pthread_mutex_unlock(&s->lock);

	/*
	 * Registered before JavaScript can know the request: once it replies, libfuse frees the
	 * request, and registering afterwards would touch freed memory. The id, not a pointer,
	 * is the callback's data, for the same reason.
	 */
	fuse_req_interrupt_func(r->req, on_interrupt, (void *)(uintptr_t)r->id);

	/* Under the lock, so that an interrupt is always queued behind its request. */
	pthread_mutex_lock(&s->lock);
	/* lp_refuse leaves requests not posted yet to us: unmount began meanwhile. */
	int refused = s->refusing;
	napi_status st = napi_ok;
	if (!refused) {
		r->posted = 1;
		st = post_locked(s, LP_MSG_REQUEST, r->id);
		if (st == napi_ok && r->interrupted)
			post_locked(s, LP_INTERRUPT, r->id);
	}
	if (refused || st != napi_ok)
		unlink_locked(s, r->id); /* never queued: JavaScript cannot know it */
	pthread_mutex_unlock(&s->lock);
	if (refused || st != napi_ok) {
		fuse_reply_err(r->req, refused ? ENOTCONN : EIO);
		lp_req_free(s, r);
	}
}

void lp_post_event(struct lp_session *s, enum lp_op op)
{
	pthread_mutex_lock(&s->lock);
	post_locked(s, op, 0);
	pthread_mutex_unlock(&s->lock);
}

struct lp_req *lp_find(struct lp_session *s, uint64_t id)
{
	pthread_mutex_lock(&s->lock);
	struct lp_req *r = find_locked(s, id);
	pthread_mutex_unlock(&s->lock);
	return r;
}

struct lp_req *lp_take(struct lp_session *s, uint64_t id)
{
	pthread_mutex_lock(&s->lock);
	struct lp_req *r = unlink_locked(s, id);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/*
 * Unmount begins (JavaScript thread): every request handed to JavaScript is answered
 * ENOTCONN now, and new ones are answered so as they are read, without JavaScript. The kernel then
 * holds no page locked for an answer that would never come (inval.c waits for them).
 */
void lp_refuse(struct lp_session *s)
{
	pthread_mutex_lock(&s->lock);
	s->refusing = 1;
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct lp_req **p = &s->buckets[i];
		while (*p) {
			struct lp_req *r = *p;
			if (!r->posted) {
				p = &r->next;
				continue;
			}
			*p = r->next;
			s->count--;
			fuse_reply_err(r->req, ENOTCONN);
			lp_req_free(s, r);
		}
	}
	pthread_mutex_unlock(&s->lock);
}

/*
 * The session is over and its channel closed (JavaScript thread, device no longer read): what is
 * still pending can no longer be answered, only freed.
 */
void lp_drain(struct lp_session *s)
{
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct lp_req *r = s->buckets[i];
		s->buckets[i] = NULL;
		while (r) {
			struct lp_req *next = r->next;
			fuse_reply_none(r->req);
			lp_req_free(s, r);
			r = next;
		}
	}
	s->count = 0;
	pthread_mutex_unlock(&s->lock);
}
