package poller

// pages is a cursor's search page size. With --batch given it stays as
// given. Without, it grows from the first size while pages come back with
// more to read, so that a backlog is read in few round trips (each page
// needs the previous one's cursor: they cannot overlap), and falls back at
// the live edge, where a page holds what a poll interval brought.
type pages struct {
	first, most int
	size        int
}

func newPages(first, growTo int) pages {
	return pages{first: first, most: max(first, growTo), size: first}
}

// resume sizes the first page after a start at skip events into the page
// at the checkpoint: large enough to reach past them in one request when
// pages may grow (with a fixed size, the cursor steps over them page by
// page, as it always did).
func (p *pages) resume(skip int) {
	if p.most > p.first && skip > 0 {
		p.size = min(skip+p.first, p.most)
	}
}

// more: a page came back with a cursor, so more is there to read.
func (p *pages) more() { p.size = min(2*p.size, p.most) }

// edge: the cursor has read up to the present.
func (p *pages) edge() { p.size = p.first }

// anchor is edge for a cursor that read up to the present read events
// into the page at its cursor. After a grown page that is far more than a
// small page holds, and polling small pages from there would step over
// them again at every poll. So one page of exactly read events comes first
// (reported true): it is full, so its cursor is right after the last event
// read, and small pages poll from there.
func (p *pages) anchor(read int) bool {
	if read <= p.first {
		p.edge()
		return false
	}
	p.size = read
	return true
}
