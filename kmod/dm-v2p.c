// SPDX-License-Identifier: GPL-2.0
/*
 * dm-v2p: the physical-layer filter of v2p as a device-mapper target.
 *
 * A pass-through over one device ("<dev_path> <offset>", like dm-linear) that reads the v2p
 * tag from each bio's ioprio hint bits (ioprio = class << 13 | hint << 3 | level), accounts
 * per class (the untagged class, one class per process that submits tagged bios: a VM's
 * export), applies per-class limits (IOPS, bytes per second) and priority set with
 * "dmsetup message", and sends one record per mapped bio to user space through the misc
 * device /dev/v2p-dm (read/poll), in the PhysEvent layout the correlator joins.
 *
 * Per-device state (counters, limits, held-back bios) lives outside the target instance, keyed
 * by the mapped device, so a table reload keeps it; the ring is one per module.
 * See docs/dm-target.md.
 */

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/fs.h>
#include <linux/init.h>
#include <linux/ioprio.h>
#include <linux/kernel.h>
#include <linux/ktime.h>
#include <linux/log2.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "dm-v2p-uapi.h"

#define DM_MSG_PREFIX "v2p"

#define V2P_HINT_SHIFT 3
#define V2P_HINT_MASK 0x3ffU
#define V2P_PRIO_KEEP_MASK (V2P_HINT_MASK << V2P_HINT_SHIFT)

/* Class 0: untagged bios; class 1: tagged bios of processes beyond the table; 2..: one each. */
#define V2P_CLASS_UNTAGGED 0
#define V2P_CLASS_OTHER 1
#define V2P_MAX_CLASSES 18
#define V2P_LAT_BUCKETS 24	/* bucket b: latency below 2^b microseconds */
#define V2P_NS 1000000000LL
#define V2P_BURST_DIV 50	/* a limited class may burst 20 ms worth of its rate */
#define V2P_MAX_BPS (4ULL << 30)
#define V2P_MAX_IOPS 10000000ULL

static unsigned int ring_records = 65536;
module_param(ring_records, uint, 0444);
MODULE_PARM_DESC(ring_records, "records the ring can hold (power of two, allocated at load)");

static unsigned int wakeup_records = 64;
module_param(wakeup_records, uint, 0644);
MODULE_PARM_DESC(wakeup_records,
		 "wake a sleeping reader once this many records wait (readers poll with a timeout for sparse records)");

static unsigned int ring_limit;
module_param(ring_limit, uint, 0644);
MODULE_PARM_DESC(ring_limit, "records the ring holds before it drops (0: ring_records)");

struct v2p_class {
	u32 tgid;		/* the process of a per-process class; 0 otherwise */
	atomic64_t ios;
	atomic64_t bytes;
	atomic64_t lat_ns;	/* sum of completion latencies */
	atomic64_t lat[V2P_LAT_BUCKETS];
	atomic64_t delayed;	/* bios held back by a limit */
	/* Limits, under v2p_md.lock; 'limited' is read without it. */
	bool limited;
	u64 iops_limit;
	u64 bps_limit;
	s64 io_tokens;		/* in 1e-9 I/O */
	s64 byte_tokens;	/* in 1e-9 byte */
	u64 refill_ns;
	u16 prio;		/* ioprio class << 13 | level for this class's bios; 0: keep */
	struct bio_list queue;	/* held back, already remapped */
};

/* State of one mapped device, shared by every v2p target instance of it (reload keeps it). */
struct v2p_md {
	struct list_head node;
	struct mapped_device *md;
	u32 devt;		/* the dm device, for the records */
	unsigned int refs;	/* under v2p_mds_lock */
	spinlock_t lock;
	int nclasses;		/* written under lock, read with READ_ONCE */
	struct v2p_class classes[V2P_MAX_CLASSES];
	bool may_delay;
	struct delayed_work work;
	unsigned long release_at;	/* jiffies the work is due, while it is pending */
	atomic64_t records;
};

struct v2p_target {
	struct dm_dev *dev;
	sector_t start;
	struct v2p_md *shared;
};

struct v2p_bio {
	u64 start_ns;
	int class;
};

static LIST_HEAD(v2p_mds);
static DEFINE_MUTEX(v2p_mds_lock);

/* ---- the ring ---------------------------------------------------------------------------- */

static struct {
	spinlock_t lock;
	struct v2p_dm_record *buf;
	u32 size;		/* power of two */
	u64 head;		/* next record written */
	u64 tail;		/* next record read */
	u64 produced;
	u64 dropped;
	u64 delivered;
	wait_queue_head_t wait;
	struct mutex read_lock;	/* one reader copies and advances tail at a time */
} ring;

static u32 ring_capacity(void)
{
	u32 limit = READ_ONCE(ring_limit);

	return limit && limit < ring.size ? limit : ring.size;
}

/* Never blocks: a full ring drops the record and counts it. */
static void ring_push(const struct v2p_dm_record *rec)
{
	unsigned long flags;
	bool wake = false;

	spin_lock_irqsave(&ring.lock, flags);
	if (ring.head - ring.tail < ring_capacity()) {
		ring.buf[ring.head & (ring.size - 1)] = *rec;
		ring.head++;
		ring.produced++;
		/* A wakeup per record costs a context switch per I/O: batch them. */
		wake = ring.head - ring.tail >= max(READ_ONCE(wakeup_records), 1U);
	} else {
		ring.dropped++;
	}
	spin_unlock_irqrestore(&ring.lock, flags);
	if (wake && wq_has_sleeper(&ring.wait))
		wake_up_interruptible(&ring.wait);
}

static bool ring_empty(void)
{
	unsigned long flags;
	bool empty;

	spin_lock_irqsave(&ring.lock, flags);
	empty = ring.head == ring.tail;
	spin_unlock_irqrestore(&ring.lock, flags);
	return empty;
}

static ssize_t ring_read(struct file *file, char __user *ubuf, size_t len, loff_t *ppos)
{
	size_t want = len / sizeof(struct v2p_dm_record);
	unsigned long flags;
	u64 head, tail, n, first;
	ssize_t ret;

	if (!want)
		return -EINVAL;
	if (mutex_lock_interruptible(&ring.read_lock))
		return -ERESTARTSYS;
	for (;;) {
		spin_lock_irqsave(&ring.lock, flags);
		head = ring.head;
		tail = ring.tail;
		spin_unlock_irqrestore(&ring.lock, flags);
		if (head != tail)
			break;
		if (file->f_flags & O_NONBLOCK) {
			ret = -EAGAIN;
			goto out;
		}
		mutex_unlock(&ring.read_lock);
		if (wait_event_interruptible(ring.wait, !ring_empty()))
			return -ERESTARTSYS;
		if (mutex_lock_interruptible(&ring.read_lock))
			return -ERESTARTSYS;
	}
	/* Producers never write the slots between tail and head: copy them without the lock. */
	n = min_t(u64, head - tail, want);
	first = min_t(u64, n, ring.size - (tail & (ring.size - 1)));
	if (copy_to_user(ubuf, &ring.buf[tail & (ring.size - 1)], first * sizeof(*ring.buf)) ||
	    copy_to_user(ubuf + first * sizeof(*ring.buf), ring.buf,
			 (n - first) * sizeof(*ring.buf))) {
		ret = -EFAULT;
		goto out;
	}
	spin_lock_irqsave(&ring.lock, flags);
	ring.tail += n;
	ring.delivered += n;
	spin_unlock_irqrestore(&ring.lock, flags);
	ret = n * sizeof(*ring.buf);
out:
	mutex_unlock(&ring.read_lock);
	return ret;
}

static __poll_t ring_poll(struct file *file, poll_table *wait)
{
	poll_wait(file, &ring.wait, wait);
	return ring_empty() ? 0 : EPOLLIN | EPOLLRDNORM;
}

static long ring_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct v2p_dm_ring_stats st = {};
	unsigned long flags;

	if (cmd != V2P_DM_IOC_RING_STATS)
		return -ENOTTY;
	spin_lock_irqsave(&ring.lock, flags);
	st.produced = ring.produced;
	st.dropped = ring.dropped;
	st.delivered = ring.delivered;
	spin_unlock_irqrestore(&ring.lock, flags);
	st.capacity = ring_capacity();
	return copy_to_user((void __user *)arg, &st, sizeof(st)) ? -EFAULT : 0;
}

static const struct file_operations ring_fops = {
	.owner = THIS_MODULE,
	.read = ring_read,
	.poll = ring_poll,
	.unlocked_ioctl = ring_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice ring_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = V2P_DM_MISC_NAME,
	.fops = &ring_fops,
	.mode = 0600,
};

/* ---- classes and limits ------------------------------------------------------------------ */

static int class_of(struct v2p_md *s, struct bio *bio)
{
	u32 tgid = current->tgid;
	unsigned long flags;
	int i, n;

	if (!((bio_prio(bio) >> V2P_HINT_SHIFT) & V2P_HINT_MASK))
		return V2P_CLASS_UNTAGGED;
	/* A kernel thread maps bios it did not submit (dm's deferred bios after a resume). */
	if (current->flags & PF_KTHREAD)
		return V2P_CLASS_OTHER;
	/* Pairs with smp_store_release() below: a class counted is fully written. */
	n = smp_load_acquire(&s->nclasses);
	for (i = V2P_CLASS_OTHER + 1; i < n; i++)
		if (READ_ONCE(s->classes[i].tgid) == tgid)
			return i;
	spin_lock_irqsave(&s->lock, flags);
	for (i = V2P_CLASS_OTHER + 1; i < s->nclasses; i++)
		if (s->classes[i].tgid == tgid)
			goto found;
	if (s->nclasses == V2P_MAX_CLASSES) {
		i = V2P_CLASS_OTHER;
		goto found;
	}
	i = s->nclasses;
	s->classes[i].tgid = tgid;
	/* Publish the class after its tgid, for the lockless scan above. */
	smp_store_release(&s->nclasses, i + 1);
found:
	spin_unlock_irqrestore(&s->lock, flags);
	return i;
}

static void refill(struct v2p_class *c, u64 now)
{
	u64 dt = min_t(u64, now - c->refill_ns, V2P_NS);
	s64 cap;

	c->refill_ns = now;
	if (c->iops_limit) {
		cap = (s64)max_t(u64, c->iops_limit / V2P_BURST_DIV, 1) * V2P_NS;
		c->io_tokens = min_t(s64, c->io_tokens + (s64)(c->iops_limit * dt), cap);
	}
	if (c->bps_limit) {
		cap = (s64)max_t(u64, c->bps_limit / V2P_BURST_DIV, 4096) * V2P_NS;
		c->byte_tokens = min_t(s64, c->byte_tokens + (s64)(c->bps_limit * dt), cap);
	}
}

/* Takes the tokens of one bio if the class may send it now. Under s->lock. */
static bool take_tokens(struct v2p_class *c, struct bio *bio, u64 now)
{
	refill(c, now);
	if ((c->iops_limit && c->io_tokens < 0) || (c->bps_limit && c->byte_tokens < 0))
		return false;
	if (c->iops_limit)
		c->io_tokens -= V2P_NS;
	if (c->bps_limit)
		c->byte_tokens -= (s64)bio->bi_iter.bi_size * V2P_NS;
	return true;
}

/* Nanoseconds until the class has tokens again. Under s->lock. */
static u64 wait_ns(struct v2p_class *c)
{
	u64 w = 0;

	if (c->iops_limit && c->io_tokens < 0)
		w = max_t(u64, w, div64_u64(-c->io_tokens, c->iops_limit) + 1);
	if (c->bps_limit && c->byte_tokens < 0)
		w = max_t(u64, w, div64_u64(-c->byte_tokens, c->bps_limit) + 1);
	return w;
}

/* Arms the release work to run in ns, unless it is already due sooner. Under s->lock. */
static void schedule_release(struct v2p_md *s, u64 ns)
{
	unsigned long j = max_t(unsigned long, nsecs_to_jiffies(ns), 1);

	if (delayed_work_pending(&s->work) && time_before_eq(s->release_at, jiffies + j))
		return;
	s->release_at = jiffies + j;
	mod_delayed_work(system_wq, &s->work, j);
}

/* Sends the held-back bios whose class has tokens; re-arms itself while any wait. */
static void release_work(struct work_struct *work)
{
	struct v2p_md *s = container_of(to_delayed_work(work), struct v2p_md, work);
	struct bio_list go = BIO_EMPTY_LIST;
	u64 now = ktime_get_ns(), next = 0;
	unsigned long flags;
	struct bio *bio;
	int i;

	spin_lock_irqsave(&s->lock, flags);
	s->release_at = jiffies;
	for (i = 0; i < s->nclasses; i++) {
		struct v2p_class *c = &s->classes[i];

		while ((bio = bio_list_peek(&c->queue))) {
			if (s->may_delay && !take_tokens(c, bio, now)) {
				u64 w = wait_ns(c);

				next = next ? min(next, w) : w;
				break;
			}
			bio_list_add(&go, bio_list_pop(&c->queue));
		}
	}
	if (next)
		schedule_release(s, next);
	spin_unlock_irqrestore(&s->lock, flags);
	while ((bio = bio_list_pop(&go)))
		submit_bio_noacct(bio);
}

/* Sends every held-back bio now (suspend, limit removal). */
static void release_all(struct v2p_md *s)
{
	unsigned long flags;

	spin_lock_irqsave(&s->lock, flags);
	s->may_delay = false;
	spin_unlock_irqrestore(&s->lock, flags);
	cancel_delayed_work_sync(&s->work);
	release_work(&s->work.work);
}

/* ---- shared per-device state -------------------------------------------------------------- */

static struct v2p_md *v2p_md_get(struct mapped_device *md)
{
	struct v2p_md *s;
	int i, j;

	mutex_lock(&v2p_mds_lock);
	list_for_each_entry(s, &v2p_mds, node) {
		if (s->md == md) {
			s->refs++;
			goto out;
		}
	}
	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		goto out;
	s->md = md;
	s->devt = disk_devt(dm_disk(md));
	s->refs = 1;
	spin_lock_init(&s->lock);
	INIT_DELAYED_WORK(&s->work, release_work);
	s->nclasses = V2P_CLASS_OTHER + 1;
	for (i = 0; i < V2P_MAX_CLASSES; i++) {
		struct v2p_class *c = &s->classes[i];

		atomic64_set(&c->ios, 0);
		atomic64_set(&c->bytes, 0);
		atomic64_set(&c->lat_ns, 0);
		atomic64_set(&c->delayed, 0);
		for (j = 0; j < V2P_LAT_BUCKETS; j++)
			atomic64_set(&c->lat[j], 0);
		bio_list_init(&c->queue);
	}
	list_add(&s->node, &v2p_mds);
out:
	mutex_unlock(&v2p_mds_lock);
	return s;
}

static void v2p_md_put(struct v2p_md *s)
{
	mutex_lock(&v2p_mds_lock);
	if (--s->refs) {
		mutex_unlock(&v2p_mds_lock);
		return;
	}
	list_del(&s->node);
	mutex_unlock(&v2p_mds_lock);
	release_all(s);
	kfree(s);
}

/* ---- the target ----------------------------------------------------------------------------- */

/* Construct: <dev_path> <offset> */
static int v2p_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	struct v2p_target *vt;
	unsigned long long start;
	char dummy;
	int ret;

	if (argc != 2) {
		ti->error = "v2p: expected 2 arguments: <dev_path> <offset>";
		return -EINVAL;
	}
	if (sscanf(argv[1], "%llu%c", &start, &dummy) != 1 || start != (sector_t)start) {
		ti->error = "v2p: invalid offset (a sector number expected)";
		return -EINVAL;
	}
	vt = kzalloc(sizeof(*vt), GFP_KERNEL);
	if (!vt) {
		ti->error = "v2p: cannot allocate the target";
		return -ENOMEM;
	}
	vt->start = start;
	ret = dm_get_device(ti, argv[0], dm_table_get_mode(ti->table), &vt->dev);
	if (ret) {
		ti->error = "v2p: device lookup failed";
		goto bad;
	}
	vt->shared = v2p_md_get(dm_table_get_md(ti->table));
	if (!vt->shared) {
		ti->error = "v2p: cannot allocate the device state";
		ret = -ENOMEM;
		goto bad_dev;
	}
	ti->num_flush_bios = 1;
	ti->num_discard_bios = 1;
	ti->num_secure_erase_bios = 1;
	ti->num_write_zeroes_bios = 1;
	ti->per_io_data_size = sizeof(struct v2p_bio);
	ti->private = vt;
	return 0;
bad_dev:
	dm_put_device(ti, vt->dev);
bad:
	kfree(vt);
	return ret;
}

static void v2p_dtr(struct dm_target *ti)
{
	struct v2p_target *vt = ti->private;

	v2p_md_put(vt->shared);
	dm_put_device(ti, vt->dev);
	kfree(vt);
}

static u8 record_op(struct bio *bio)
{
	switch (bio_op(bio)) {
	case REQ_OP_READ:
		return V2P_DM_OP_READ;
	case REQ_OP_WRITE:
		return (!bio->bi_iter.bi_size && (bio->bi_opf & REQ_PREFLUSH)) ?
			V2P_DM_OP_FLUSH : V2P_DM_OP_WRITE;
	case REQ_OP_FLUSH:
		return V2P_DM_OP_FLUSH;
	case REQ_OP_DISCARD:
	case REQ_OP_SECURE_ERASE:
		return V2P_DM_OP_DISCARD;
	case REQ_OP_WRITE_ZEROES:
		return V2P_DM_OP_WRITE_ZEROES;
	default:
		return V2P_DM_OP_OTHER;
	}
}

static void send_record(struct v2p_md *s, struct bio *bio, u64 now)
{
	struct v2p_dm_record rec;

	rec.ts_ns = now;
	rec.sector = bio->bi_iter.bi_sector;
	rec.old_sector = 0;
	rec.latency_ns = 0;
	rec.dev = s->devt;
	rec.old_dev = 0;
	rec.bytes = bio->bi_iter.bi_size;
	rec.tgid = current->tgid;
	rec.tid = current->pid;
	rec.cmd_flags = bio->bi_opf;
	rec.ioprio = bio_prio(bio);
	rec.op = record_op(bio);
	rec.kind = V2P_DM_KIND_QUEUE;
	rec.error = 0;
	memcpy(rec.comm, current->comm, sizeof(rec.comm));
	ring_push(&rec);
	atomic64_inc(&s->records);
}

static int v2p_map(struct dm_target *ti, struct bio *bio)
{
	struct v2p_target *vt = ti->private;
	struct v2p_md *s = vt->shared;
	struct v2p_bio *pb = dm_per_bio_data(bio, sizeof(struct v2p_bio));
	u64 now = ktime_get_ns();
	struct v2p_class *c;
	unsigned long flags;
	u16 prio;

	send_record(s, bio, now);
	pb->start_ns = now;
	pb->class = class_of(s, bio);
	c = &s->classes[pb->class];
	atomic64_inc(&c->ios);
	atomic64_add(bio->bi_iter.bi_size, &c->bytes);

	prio = READ_ONCE(c->prio);
	if (prio)
		bio->bi_ioprio = prio | (bio_prio(bio) & V2P_PRIO_KEEP_MASK);
	bio_set_dev(bio, vt->dev->bdev);
	if (bio_sectors(bio) || op_is_zone_mgmt(bio_op(bio)))
		bio->bi_iter.bi_sector = vt->start + dm_target_offset(ti, bio->bi_iter.bi_sector);

	if (!READ_ONCE(c->limited) || !bio_sectors(bio))
		return DM_MAPIO_REMAPPED;
	spin_lock_irqsave(&s->lock, flags);
	if (!s->may_delay || (bio_list_empty(&c->queue) && take_tokens(c, bio, now))) {
		spin_unlock_irqrestore(&s->lock, flags);
		return DM_MAPIO_REMAPPED;
	}
	bio_list_add(&c->queue, bio);
	atomic64_inc(&c->delayed);
	schedule_release(s, wait_ns(c));
	spin_unlock_irqrestore(&s->lock, flags);
	return DM_MAPIO_SUBMITTED;
}

static int v2p_end_io(struct dm_target *ti, struct bio *bio, blk_status_t *error)
{
	struct v2p_target *vt = ti->private;
	struct v2p_bio *pb = dm_per_bio_data(bio, sizeof(struct v2p_bio));
	struct v2p_class *c = &vt->shared->classes[pb->class];
	u64 lat = ktime_get_ns() - pb->start_ns;
	int b = min_t(int, fls64(div_u64(lat, 1000)), V2P_LAT_BUCKETS - 1);

	atomic64_add(lat, &c->lat_ns);
	atomic64_inc(&c->lat[b]);
	return DM_ENDIO_DONE;
}

static void v2p_presuspend(struct dm_target *ti)
{
	struct v2p_target *vt = ti->private;

	release_all(vt->shared);
}

static void v2p_resume(struct dm_target *ti)
{
	struct v2p_target *vt = ti->private;
	unsigned long flags;

	spin_lock_irqsave(&vt->shared->lock, flags);
	vt->shared->may_delay = true;
	spin_unlock_irqrestore(&vt->shared->lock, flags);
}

static const char *const prio_names[] = { "none", "rt", "be", "idle" };

static void class_name(struct v2p_md *s, int i, char *buf, size_t len)
{
	if (i == V2P_CLASS_UNTAGGED)
		strscpy(buf, "untagged", len);
	else if (i == V2P_CLASS_OTHER)
		strscpy(buf, "other", len);
	else
		snprintf(buf, len, "%u", s->classes[i].tgid);
}

static void v2p_status(struct dm_target *ti, status_type_t type, unsigned int status_flags,
		       char *result, unsigned int maxlen)
{
	struct v2p_target *vt = ti->private;
	struct v2p_md *s = vt->shared;
	unsigned int sz = 0;
	unsigned long flags;
	char name[16];
	u64 dropped;
	int i, n;

	switch (type) {
	case STATUSTYPE_INFO:
		spin_lock_irqsave(&ring.lock, flags);
		dropped = ring.dropped;
		spin_unlock_irqrestore(&ring.lock, flags);
		n = READ_ONCE(s->nclasses);
		DMEMIT("%lld %llu %d", (long long)atomic64_read(&s->records), dropped, n);
		for (i = 0; i < n; i++) {
			struct v2p_class *c = &s->classes[i];
			u16 p = READ_ONCE(c->prio);

			class_name(s, i, name, sizeof(name));
			DMEMIT(" %s %lld %lld %llu %llu %s:%u %lld", name,
			       (long long)atomic64_read(&c->ios),
			       (long long)atomic64_read(&c->bytes), READ_ONCE(c->iops_limit),
			       READ_ONCE(c->bps_limit), prio_names[IOPRIO_PRIO_CLASS(p) & 3],
			       (unsigned int)(IOPRIO_PRIO_DATA(p) & 7),
			       (long long)atomic64_read(&c->delayed));
		}
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s %llu", vt->dev->name, (unsigned long long)vt->start);
		break;
	case STATUSTYPE_IMA:
		DMEMIT_TARGET_NAME_VERSION(ti->type);
		DMEMIT(",device_name=%s,start=%llu;", vt->dev->name,
		       (unsigned long long)vt->start);
		break;
	}
}

/* A class named in a message: "untagged", "other" or a process id (created if new). */
static int message_class(struct v2p_md *s, const char *arg)
{
	unsigned long flags;
	u32 tgid;
	int i;

	if (!strcmp(arg, "untagged"))
		return V2P_CLASS_UNTAGGED;
	if (!strcmp(arg, "other"))
		return V2P_CLASS_OTHER;
	if (kstrtou32(arg, 10, &tgid) || !tgid)
		return -EINVAL;
	spin_lock_irqsave(&s->lock, flags);
	for (i = V2P_CLASS_OTHER + 1; i < s->nclasses; i++)
		if (s->classes[i].tgid == tgid)
			goto out;
	if (s->nclasses == V2P_MAX_CLASSES) {
		i = -ENOSPC;
		goto out;
	}
	i = s->nclasses;
	s->classes[i].tgid = tgid;
	/* Publish the class after its tgid, for the lockless scan in class_of(). */
	smp_store_release(&s->nclasses, i + 1);
out:
	spin_unlock_irqrestore(&s->lock, flags);
	return i;
}

static int msg_limit(struct v2p_md *s, unsigned int argc, char **argv)
{
	unsigned long flags;
	u64 iops, bps;
	int i;

	if (argc != 4 || kstrtou64(argv[2], 10, &iops) || kstrtou64(argv[3], 10, &bps) ||
	    iops > V2P_MAX_IOPS || bps > V2P_MAX_BPS) {
		DMERR("message: usage: limit <untagged|other|PID> <iops> <bytes_per_second> (0: none; at most %llu iops, %llu bytes/s)",
		      V2P_MAX_IOPS, V2P_MAX_BPS);
		return -EINVAL;
	}
	i = message_class(s, argv[1]);
	if (i < 0) {
		DMERR("message: limit: class '%s' is not untagged, other or a process id (or the table of %d classes is full)",
		      argv[1], V2P_MAX_CLASSES);
		return -EINVAL;
	}
	spin_lock_irqsave(&s->lock, flags);
	s->classes[i].iops_limit = iops;
	s->classes[i].bps_limit = bps;
	s->classes[i].io_tokens = 0;
	s->classes[i].byte_tokens = 0;
	s->classes[i].refill_ns = ktime_get_ns();
	WRITE_ONCE(s->classes[i].limited, iops || bps);
	/* Bios held under the old limit go out under the new one. */
	s->release_at = jiffies;
	mod_delayed_work(system_wq, &s->work, 0);
	spin_unlock_irqrestore(&s->lock, flags);
	return 0;
}

static int msg_prio(struct v2p_md *s, unsigned int argc, char **argv)
{
	unsigned int cls, level;
	int i;

	if (argc != 4 || kstrtouint(argv[3], 10, &level) || level > 7)
		goto usage;
	for (cls = 0; cls < ARRAY_SIZE(prio_names); cls++)
		if (!strcmp(argv[2], prio_names[cls]))
			break;
	if (cls == ARRAY_SIZE(prio_names))
		goto usage;
	i = message_class(s, argv[1]);
	if (i < 0)
		goto usage;
	WRITE_ONCE(s->classes[i].prio, cls ? IOPRIO_PRIO_VALUE(cls, level) : 0);
	return 0;
usage:
	DMERR("message: usage: prio <untagged|other|PID> <none|rt|be|idle> <level 0-7>");
	return -EINVAL;
}

static void msg_stats(struct v2p_md *s, char *result, unsigned int maxlen)
{
	unsigned int sz = 0;
	char name[16];
	int i, b, n = READ_ONCE(s->nclasses);

	for (i = 0; i < n; i++) {
		struct v2p_class *c = &s->classes[i];

		class_name(s, i, name, sizeof(name));
		DMEMIT("%s%s ios=%lld bytes=%lld lat_ns=%lld lat_us_log2=", i ? "\n" : "", name,
		       (long long)atomic64_read(&c->ios), (long long)atomic64_read(&c->bytes),
		       (long long)atomic64_read(&c->lat_ns));
		for (b = 0; b < V2P_LAT_BUCKETS; b++)
			DMEMIT("%s%lld", b ? "," : "", (long long)atomic64_read(&c->lat[b]));
	}
}

static void msg_reset(struct v2p_md *s)
{
	int i, b;

	for (i = 0; i < V2P_MAX_CLASSES; i++) {
		struct v2p_class *c = &s->classes[i];

		atomic64_set(&c->ios, 0);
		atomic64_set(&c->bytes, 0);
		atomic64_set(&c->lat_ns, 0);
		atomic64_set(&c->delayed, 0);
		for (b = 0; b < V2P_LAT_BUCKETS; b++)
			atomic64_set(&c->lat[b], 0);
	}
	atomic64_set(&s->records, 0);
}

static int v2p_message(struct dm_target *ti, unsigned int argc, char **argv, char *result,
		       unsigned int maxlen)
{
	struct v2p_target *vt = ti->private;

	if (argc >= 1 && !strcmp(argv[0], "limit"))
		return msg_limit(vt->shared, argc, argv);
	if (argc >= 1 && !strcmp(argv[0], "prio"))
		return msg_prio(vt->shared, argc, argv);
	if (argc == 1 && !strcmp(argv[0], "stats")) {
		msg_stats(vt->shared, result, maxlen);
		return 1;	/* the result goes back to dmsetup */
	}
	if (argc == 1 && !strcmp(argv[0], "reset")) {
		msg_reset(vt->shared);
		return 0;
	}
	DMERR("message: unknown or malformed message '%s' (limit, prio, stats, reset)",
	      argc ? argv[0] : "");
	return -EINVAL;
}

static int v2p_iterate_devices(struct dm_target *ti, iterate_devices_callout_fn fn, void *data)
{
	struct v2p_target *vt = ti->private;

	return fn(ti, vt->dev, vt->start, ti->len, data);
}

static struct target_type v2p_target_type = {
	.name = "v2p",
	.version = { 1, 0, 0 },
	.features = DM_TARGET_PASSES_INTEGRITY | DM_TARGET_NOWAIT,
	.module = THIS_MODULE,
	.ctr = v2p_ctr,
	.dtr = v2p_dtr,
	.map = v2p_map,
	.end_io = v2p_end_io,
	.presuspend = v2p_presuspend,
	.presuspend_undo = v2p_resume,
	.resume = v2p_resume,
	.status = v2p_status,
	.message = v2p_message,
	.iterate_devices = v2p_iterate_devices,
};

static int __init dm_v2p_init(void)
{
	int ret;

	if (!ring_records || !is_power_of_2(ring_records)) {
		DMERR("ring_records must be a power of two, not %u", ring_records);
		return -EINVAL;
	}
	spin_lock_init(&ring.lock);
	init_waitqueue_head(&ring.wait);
	mutex_init(&ring.read_lock);
	ring.size = ring_records;
	ring.buf = vmalloc_array(ring.size, sizeof(*ring.buf));
	if (!ring.buf)
		return -ENOMEM;
	ret = misc_register(&ring_dev);
	if (ret)
		goto bad_ring;
	ret = dm_register_target(&v2p_target_type);
	if (ret)
		goto bad_misc;
	return 0;
bad_misc:
	misc_deregister(&ring_dev);
bad_ring:
	vfree(ring.buf);
	return ret;
}

static void __exit dm_v2p_exit(void)
{
	dm_unregister_target(&v2p_target_type);
	misc_deregister(&ring_dev);
	vfree(ring.buf);
}

module_init(dm_v2p_init);
module_exit(dm_v2p_exit);

MODULE_DESCRIPTION(DM_NAME " v2p target: per-VM accounting, limits and records by I/O tag");
MODULE_AUTHOR("The v2p authors");
MODULE_LICENSE("GPL");
