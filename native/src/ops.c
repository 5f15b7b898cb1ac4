/*
 * libfuse's low-level callbacks. Each copies what its request carries into an lp_req and
 * queues it for JavaScript; none waits. init, destroy and forget are answered here.
 */
#include <errno.h>
#include <time.h>
#include "lp.h"

static struct lp_session *session_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

/*
 * Names reach JavaScript as strings and the MDT as JSON: only UTF-8 can be kept (as ext4's
 * strict encoding keeps only it). Strict: no overlong forms, no surrogates, nothing past
 * U+10FFFF, any of which would otherwise become U+FFFD and two names one.
 */
static int utf8_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (p && *p) {
		unsigned c = *p++, n, cp;
		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return 0;
		for (unsigned i = 0; i < n; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (*p & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return 0;
	}
	return 1;
}

/*
 * A request record, or NULL after answering: ENOMEM, or for a name not UTF-8, ENOENT to a
 * lookup (no such name can exist here) and EINVAL to the rest (no such name can be made).
 */
static struct lp_req *make(fuse_req_t req, enum lp_op op, fuse_ino_t ino, const char *name, const char *name2)
{
	if (!utf8_ok(name) || !utf8_ok(name2)) {
		fuse_reply_err(req, op == LP_LOOKUP ? ENOENT : EINVAL);
		return NULL;
	}
	struct lp_req *r = lp_req_new(req, op, ino, name, name2);
	if (!r)
		fuse_reply_err(req, ENOMEM);
	return r;
}

static void submit(fuse_req_t req, struct lp_req *r)
{
	lp_submit(session_of(req), r);
}

/* Requests that carry nothing but their inode (and maybe a name or two). */
static void plain(fuse_req_t req, enum lp_op op, fuse_ino_t ino, const char *name, const char *name2)
{
	struct lp_req *r = make(req, op, ino, name, name2);
	if (r)
		submit(req, r);
}

/* A request record with the handle of an open file or directory (if any). */
static struct lp_req *make_on(fuse_req_t req, enum lp_op op, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lp_req *r = make(req, op, ino, NULL, NULL);
	if (r && fi) {
		r->fh = fi->fh;
		r->has_fh = 1;
	}
	return r;
}

/* Requests on an open file or directory: the handle, and an extra integer. */
static void on_handle(fuse_req_t req, enum lp_op op, fuse_ino_t ino, struct fuse_file_info *fi, int flags)
{
	struct lp_req *r = make_on(req, op, ino, fi);
	if (!r)
		return;
	r->flags = flags;
	submit(req, r);
}

/* read, readdir, write: a range of an open handle (not submitted yet). */
static struct lp_req *ranged(fuse_req_t req, enum lp_op op, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct lp_req *r = make_on(req, op, ino, fi);
	if (r) {
		r->off = off;
		r->size = size;
	}
	return r;
}

static void lp_init(void *userdata, struct fuse_conn_info *conn)
{
	struct lp_session *s = userdata;

	conn->max_write = LP_MAX_IO;
	conn->max_read = LP_MAX_IO; /* must equal the max_read mount option (addon.c) */
	conn->max_background = s->max_background;
	conn->congestion_threshold = s->max_background * 3 / 4;
	/* max_readahead stays what the kernel offered: it can only lower the window. */
	conn->time_gran = 1000000; /* lproxy keeps times in ms */
	/*
	 * lproxy does its own write-back (no writeback_cache); the kernel sends O_TRUNC as a
	 * setattr, kills suid bits itself, and applies the umask; no splicing (the data are
	 * copied into JavaScript anyway).
	 */
	conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_HANDLE_KILLPRIV | FUSE_CAP_DONT_MASK |
			FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	/* Relied upon (libfuse's defaults too): reads in the background, lookups of one directory in parallel. */
	conn->want |= conn->capable & (FUSE_CAP_ASYNC_READ | FUSE_CAP_PARALLEL_DIROPS);
	s->conn = *conn;
	/*
	 * The reply goes to the kernel after this returns, and the kernel then lowers the
	 * read-ahead window to max_readahead: JavaScript hears of INIT only once the reply is sent
	 * (readers.c), so what it tunes afterwards stays.
	 */
	__atomic_store_n(&s->init_replied, 1, __ATOMIC_SEQ_CST);
}

/*
 * The session ends. Called by fuse_session_destroy (our own unmount, nothing to tell) or
 * for a DESTROY from the kernel, which JavaScript should hear of.
 */
static void lp_destroy(void *userdata)
{
	struct lp_session *s = userdata;
	if (!s->stopping && !__atomic_exchange_n(&s->ended, 1, __ATOMIC_SEQ_CST))
		lp_post_event(s, LP_ENDED);
}

/* Inode numbers are FIDs, never reused, and llite keeps no per-inode state to drop. */
static void lp_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static void lp_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
	fuse_reply_none(req);
}

static void lp_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	plain(req, LP_LOOKUP, parent, name, NULL);
}

static void lp_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	plain(req, LP_GETATTR, ino, NULL, NULL);
}

static double ms_of(struct timespec ts)
{
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ms_of(ts);
}

static void lp_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	struct lp_req *r = make_on(req, LP_SETATTR, ino, fi);
	struct lp_setattr *a;

	if (!r)
		return;
	a = &r->set;
	a->mode_set = !!(to_set & FUSE_SET_ATTR_MODE);
	a->mode = attr->st_mode;
	a->uid_set = !!(to_set & FUSE_SET_ATTR_UID);
	a->uid = attr->st_uid;
	a->gid_set = !!(to_set & FUSE_SET_ATTR_GID);
	a->gid = attr->st_gid;
	a->size_set = !!(to_set & FUSE_SET_ATTR_SIZE);
	a->size = attr->st_size;
	/* Each time on its own: touch -m, or utimensat with UTIME_OMIT, sets only one. */
	a->atime_set = !!(to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW));
	a->atime_ms = to_set & FUSE_SET_ATTR_ATIME_NOW ? now_ms() : ms_of(attr->st_atim);
	a->mtime_set = !!(to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW));
	a->mtime_ms = to_set & FUSE_SET_ATTR_MTIME_NOW ? now_ms() : ms_of(attr->st_mtim);
	a->times_now = (a->atime_set || a->mtime_set) &&
		       (!(to_set & FUSE_SET_ATTR_ATIME) || (to_set & FUSE_SET_ATTR_ATIME_NOW)) &&
		       (!(to_set & FUSE_SET_ATTR_MTIME) || (to_set & FUSE_SET_ATTR_MTIME_NOW));
	submit(req, r);
}

static void lp_readlink(fuse_req_t req, fuse_ino_t ino)
{
	plain(req, LP_READLINK, ino, NULL, NULL);
}

static void with_mode(fuse_req_t req, enum lp_op op, fuse_ino_t parent, const char *name, mode_t mode, int flags, dev_t rdev)
{
	struct lp_req *r = make(req, op, parent, name, NULL);
	if (!r)
		return;
	r->mode = mode;
	r->flags = flags;
	r->rdev = (uint32_t)rdev;
	submit(req, r);
}

/* rdev is what the kernel sent: its 32-bit encoding of the device number. */
static void lp_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	with_mode(req, LP_MKNOD, parent, name, mode, 0, rdev);
}

static void lp_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	with_mode(req, LP_MKDIR, parent, name, mode, 0, 0);
}

static void lp_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
	with_mode(req, LP_CREATE, parent, name, mode, fi->flags, 0);
}

static void lp_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	plain(req, LP_UNLINK, parent, name, NULL);
}

static void lp_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	plain(req, LP_RMDIR, parent, name, NULL);
}

static void lp_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	plain(req, LP_SYMLINK, parent, name, link);
}

static void lp_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct lp_req *r = make(req, LP_RENAME, parent, name, newname);
	if (!r)
		return;
	r->ino2 = newparent;
	r->flags = (int)flags;
	submit(req, r);
}

static void lp_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct lp_req *r = make(req, LP_LINK, ino, newname, NULL);
	if (!r)
		return;
	r->ino2 = newparent;
	submit(req, r);
}

/* open, opendir, access: an inode and flags. */
static void flagged(fuse_req_t req, enum lp_op op, fuse_ino_t ino, int flags)
{
	struct lp_req *r = make(req, op, ino, NULL, NULL);
	if (!r)
		return;
	r->flags = flags;
	submit(req, r);
}

static void lp_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	flagged(req, LP_OPEN, ino, fi->flags);
}

static void lp_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	flagged(req, LP_OPENDIR, ino, fi->flags);
}

static void lp_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct lp_req *r = ranged(req, LP_READ, ino, size, off, fi);
	if (r)
		submit(req, r);
}

static void lp_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct lp_req *r = ranged(req, LP_READDIR, ino, size, off, fi);
	if (r)
		submit(req, r);
}

/*
 * The data stay where they were read: the request takes the receive buffer over,
 * and JavaScript copies the data once, into the Buffer it keeps.
 */
static void lp_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct lp_req *r = ranged(req, LP_WRITE, ino, size, off, fi);
	if (!r)
		return;
	r->data = buf;
	r->buf = lp_reader_take_buffer();
	submit(req, r);
}

static void lp_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	on_handle(req, LP_FLUSH, ino, fi, 0);
}

static void lp_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	on_handle(req, LP_RELEASE, ino, fi, 0);
}

static void lp_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	on_handle(req, LP_FSYNC, ino, fi, datasync);
}

static void lp_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	on_handle(req, LP_RELEASEDIR, ino, fi, 0);
}

static void lp_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	on_handle(req, LP_FSYNCDIR, ino, fi, datasync);
}

static void lp_statfs(fuse_req_t req, fuse_ino_t ino)
{
	plain(req, LP_STATFS, ino, NULL, NULL);
}

static void lp_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	flagged(req, LP_ACCESS, ino, mask);
}

const struct fuse_lowlevel_ops lp_ops = {
	.init = lp_init,
	.destroy = lp_destroy,
	.lookup = lp_lookup,
	.forget = lp_forget,
	.forget_multi = lp_forget_multi,
	.getattr = lp_getattr,
	.setattr = lp_setattr,
	.readlink = lp_readlink,
	.mknod = lp_mknod,
	.mkdir = lp_mkdir,
	.unlink = lp_unlink,
	.rmdir = lp_rmdir,
	.symlink = lp_symlink,
	.rename = lp_rename,
	.link = lp_link,
	.open = lp_open,
	.read = lp_read,
	.write = lp_write,
	.flush = lp_flush,
	.release = lp_release,
	.fsync = lp_fsync,
	.opendir = lp_opendir,
	.readdir = lp_readdir,
	.releasedir = lp_releasedir,
	.fsyncdir = lp_fsyncdir,
	.statfs = lp_statfs,
	.access = lp_access,
	.create = lp_create,
};
