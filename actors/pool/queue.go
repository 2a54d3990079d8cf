package pool

import (
	"github.com/asynkron/protoactor-go/actor"

	"slices"
	"time"

	"github.com/fdfwd/teleport-event-handler/messages"
)

// queue is what the pool holds: deliveries waiting, by URL, and the jobs
// handed to connections and not yet finished. It lives outside the actor
// instance, as the checkpoint writer's queue does, so that a restart of the
// pool loses nothing: the new incarnation hands out again what the old
// one's connections held. This is the one path by which a delivery is sent
// again; requesters send each delivery once and wait for its answer.
type queue struct {
	groups map[string]*group
	// urls lists the URLs with queued deliveries, for a stable scan.
	urls   []string
	queued int
	order  uint64 // arrival numbers
	jobID  uint64 // never reused, so a late report names a job that is gone
	held   map[uint64]*heldJob
	// drainTo asked the pool to drain and is not answered yet.
	drainTo *actor.PID
	// owedLoaded is set once the events taken back by an earlier run are
	// queued: at the pool's first start, not at its restarts.
	owedLoaded bool
}

// queued is a delivery waiting in the pool; order is its arrival number
// (0 for deliveries handed out before and queued again, which go first).
type queued struct {
	d     *messages.Delivery
	order uint64
	at    time.Time
}

// group is the queue of one URL.
type group struct {
	url   string
	items []queued
}

// heldJob is a job a connection holds: its deliveries not yet settled.
type heldJob struct {
	conn  string // the connection's PID id
	items []*messages.Delivery
}

func newQueue() *queue {
	return &queue{groups: map[string]*group{}, held: map[uint64]*heldJob{}}
}

// add queues a delivery that just arrived.
func (q *queue) add(d *messages.Delivery, now time.Time) {
	q.order++
	q.enqueue(queued{d: d, order: q.order, at: now}, false)
}

// enqueue adds a delivery to its URL's queue, at the front if it was handed
// out before.
func (q *queue) enqueue(it queued, front bool) {
	g := q.groups[it.d.URL]
	if g == nil {
		g = &group{url: it.d.URL}
		q.groups[it.d.URL] = g
		q.urls = append(q.urls, it.d.URL)
	}
	if front {
		g.items = append([]queued{it}, g.items...)
	} else {
		g.items = append(g.items, it)
	}
	q.queued++
}

// addFront queues deliveries first in line for their URL, in their order.
func (q *queue) addFront(items []*messages.Delivery) {
	for i := len(items) - 1; i >= 0; i-- {
		q.enqueue(queued{d: items[i]}, true)
	}
}

// holding reports whether a connection holds a job to the endpoint of url.
func (q *queue) holding(url string) bool {
	for _, j := range q.held {
		if len(j.items) > 0 && endpoint(j.items[0].URL) == endpoint(url) {
			return true
		}
	}
	return false
}

// hold records a job handed to conn and returns its id.
func (q *queue) hold(conn string, items []*messages.Delivery) uint64 {
	q.jobID++
	q.held[q.jobID] = &heldJob{conn: conn, items: items}
	return q.jobID
}

// finished forgets a job that conn finished; false when conn does not
// hold it (any more).
func (q *queue) finished(id uint64, conn string) bool {
	if j := q.held[id]; j == nil || j.conn != conn {
		return false
	}
	delete(q.held, id)
	return true
}

// rotate takes back from conn the job id, whose first delivery was a probe
// rejected: the others go first in line again, in order, and the probe to
// the back of its queue. False when conn does not hold the job.
func (q *queue) rotate(id uint64, conn string, now time.Time) bool {
	j := q.held[id]
	if j == nil || j.conn != conn {
		return false
	}
	delete(q.held, id)
	if len(j.items) == 0 {
		return true
	}
	q.addFront(j.items[1:])
	q.order++
	q.enqueue(queued{d: j.items[0], order: q.order, at: now}, false)
	return true
}

// settled forgets one delivery of a job being sent one event at a time.
func (q *queue) settled(id uint64, d *messages.Delivery) {
	if j := q.held[id]; j != nil {
		if i := slices.Index(j.items, d); i >= 0 {
			// A copy: the connection reads the slice it was given.
			j.items = slices.Concat(j.items[:i], j.items[i+1:])
		}
	}
}

// release queues again, first in line and in their order, the deliveries
// of the jobs held by the connections for which lost is true, and returns
// how many.
func (q *queue) release(lost func(conn string) bool) int {
	var ids []uint64
	for id, j := range q.held {
		if lost(j.conn) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	n := 0
	for k := len(ids) - 1; k >= 0; k-- {
		items := q.held[ids[k]].items
		delete(q.held, ids[k])
		for i := len(items) - 1; i >= 0; i-- {
			q.enqueue(queued{d: items[i]}, true)
			n++
		}
	}
	return n
}

// take removes the next batch from g: up to batch deliveries whose bodies
// fit in maxBytes (at least one, whatever its size).
func (q *queue) take(g *group, batch, maxBytes int) []*messages.Delivery {
	n, size := 0, 2 // the brackets of an array
	for n < len(g.items) && n < batch {
		size += len(g.items[n].d.Body) + 1
		if n > 0 && size > maxBytes {
			break
		}
		n++
	}
	items := make([]*messages.Delivery, n)
	for i := range n {
		items[i] = g.items[i].d
		g.items[i] = queued{}
	}
	g.items = g.items[n:]
	q.queued -= n
	if len(g.items) == 0 {
		delete(q.groups, g.url)
		q.urls = slices.DeleteFunc(q.urls, func(u string) bool { return u == g.url })
	}
	return items
}

// next returns the group to send from: of the groups ready at now and not
// held, the one whose oldest delivery came first. A group is ready when it holds a full
// batch or its oldest delivery has lingered long enough; when none is, wake
// is when the first one will be.
func (q *queue) next(now time.Time, batch int, linger time.Duration, holds func(url string) bool) (best *group, wake time.Time) {
	for _, url := range q.urls {
		g := q.groups[url]
		if holds(url) {
			continue // a job that ends woke the pool
		}
		head := g.items[0]
		if batch > 1 && len(g.items) < batch {
			if due := head.at.Add(linger); due.After(now) {
				if wake.IsZero() || due.Before(wake) {
					wake = due
				}
				continue
			}
		}
		if best == nil || head.order < best.items[0].order {
			best = g
		}
	}
	return best, wake
}
