/*
 * Receive buffers. A reader thread reads each request into one; a write request keeps its
 * buffer until JavaScript has copied the data out, and the reader takes a fresh one. Reusing
 * them keeps the hot path free of 1 MiB allocations and the page faults that come with them.
 */
#include <stdlib.h>
#include "lp.h"

#define POOL_MAX (int)(sizeof(((struct lp_pool *)0)->free) / sizeof(void *))

int lp_pool_init(struct lp_pool *p, size_t size)
{
	p->n = 0;
	p->size = size;
	return pthread_mutex_init(&p->lock, NULL);
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

void lp_pool_destroy(struct lp_pool *p)
{
	while (p->n > 0)
		free(p->free[--p->n]);
	pthread_mutex_destroy(&p->lock);
}
