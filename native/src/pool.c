/*
 * Receive buffers. Each request is read into one (readers.c). A small write's data is
 * copied out and its buffer comes back at once; a large write's buffer becomes the Buffer
 * JavaScript keeps (no copy), and comes back when that Buffer is collected. Reusing them
 * keeps the hot path free of 1 MiB allocations and the page faults that come with them.
 *
 * Buffers given to JavaScript may outlive the session (they are collected whenever V8
 * likes), so the pool is counted: the session holds one reference, each such buffer another.
 */
#include <stdlib.h>
#include "lp.h"

#define POOL_MAX (int)(sizeof(((struct lp_pool *)0)->free) / sizeof(void *))

struct lp_pool *lp_pool_new(size_t size)
{
	struct lp_pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	if (pthread_mutex_init(&p->lock, NULL)) {
		free(p);
		return NULL;
	}
	p->size = size;
	p->refs = 1;
	return p;
}

void *lp_pool_get(struct lp_pool *p)
{
	void *mem = NULL;

	pthread_mutex_lock(&p->lock);
	if (p->n > 0)
		mem = p->free[--p->n];
	pthread_mutex_unlock(&p->lock);
	return mem ? mem : malloc(p->size);
}

void lp_pool_put(struct lp_pool *p, void *mem)
{
	pthread_mutex_lock(&p->lock);
	if (p->n < POOL_MAX) {
		p->free[p->n++] = mem;
		mem = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	free(mem);
}

void lp_pool_ref(struct lp_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->refs++;
	pthread_mutex_unlock(&p->lock);
}

void lp_pool_unref(struct lp_pool *p)
{
	pthread_mutex_lock(&p->lock);
	int last = --p->refs == 0;
	pthread_mutex_unlock(&p->lock);
	if (!last)
		return;
	while (p->n > 0)
		free(p->free[--p->n]);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
