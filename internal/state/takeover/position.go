package takeover

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/types"

	"github.com/fdfwd/teleport-event-handler/internal/read/teleport"
	"github.com/fdfwd/teleport-event-handler/persistence"
)

// Searcher is Teleport's audit search, as the search path calls it.
type Searcher interface {
	SearchUnstructuredEvents(ctx context.Context, from, to time.Time, namespace string, eventTypes []string, limit int, order types.EventOrder, startKey string) ([]*auditlogpb.EventUnstructured, string, error)
}

// Query is how this daemon's search path reads the audit log. The position
// is found with the same query, so that its cursor and offset mean on
// resume what they meant here.
type Query struct {
	Types  []string
	Batch  int
	Window time.Duration
	Now    time.Time
}

// Bounds of the look-ups: the original's page is found within lookupPages
// pages of lookupLimit events after its cursor, and the events of the last
// sent event's second within ownPages pages of this daemon's.
const (
	lookupLimit = 1000
	lookupPages = 20
	ownPages    = 100
)

// Resume is where the search path resumes, and how it was found.
type Resume struct {
	Position persistence.AuditPosition
	// How says it, for the log.
	How string
}

// Resume finds where this daemon's search path resumes: just after the
// original's last sent event (ID on the page at Cursor), or at the first
// event of that page when ID is empty (lost in a crash), or at the start
// of the original's window when it had sent nothing.
func (o *Original) Resume(ctx context.Context, s Searcher, q Query) (Resume, error) {
	from := o.from()
	if o.ID == "" && o.Cursor == "" {
		return Resume{persistence.AuditPosition{WindowStart: from},
			"no event sent on record: from the start of the original's window"}, nil
	}
	ev, err := o.last(ctx, s, q, from)
	if err != nil || ev == nil {
		return Resume{persistence.AuditPosition{WindowStart: from},
			"the page at the original's cursor is empty: from the start of its window"}, err
	}
	return own(ctx, s, q, ev, o.ID != "")
}

// from is the start of the original's search: its window, or (v15) its
// start time.
func (o *Original) from() time.Time {
	if !o.WindowTime.IsZero() {
		return o.WindowTime
	}
	return o.StartTime
}

// last finds the original's last sent event on the pages from its cursor,
// with this daemon's --types and then, in case they changed, with none.
// With ID empty it is the page's first event; nil when there is none.
func (o *Original) last(ctx context.Context, s Searcher, q Query, from time.Time) (*auditlogpb.EventUnstructured, error) {
	passes := [][]string{q.Types}
	if len(q.Types) > 0 {
		passes = append(passes, nil)
	}
	for _, eventTypes := range passes {
		key := o.Cursor
		for range lookupPages {
			evs, next, err := s.SearchUnstructuredEvents(ctx, from, q.Now.Add(time.Hour), teleport.Namespace, eventTypes,
				lookupLimit, types.EventOrderAscending, key)
			if err != nil {
				return nil, fmt.Errorf("find the original plugin's last sent event: %w", err)
			}
			for _, ev := range evs {
				if o.ID == "" || ev.Id == o.ID {
					return ev, nil
				}
			}
			if key = next; next == "" {
				break
			}
		}
	}
	if o.ID == "" {
		return nil, nil
	}
	return nil, &Error{
		Path: filepath.Join(o.Dir, fileID),
		Problem: fmt.Sprintf("names the event %q, which is not among the events Teleport returns after the page at %s "+
			"(read up to %d events past it)", o.ID, filepath.Join(o.Dir, fileCursor), lookupLimit*lookupPages),
		Fix: fmt.Sprintf("the two files contradict each other or the event is gone from the audit log: start with --start-time %s "+
			"to send everything since the original's start again (what it had sent arrives twice), "+
			"or give this daemon a --storage of its own and the --start-time it should send from",
			o.StartTime.Format(time.RFC3339)),
	}
}

// own is the position, in this daemon's query, just after ev (or at it):
// its window starts at ev's time, and the events of that moment that come
// before ev are skipped. Backends order events within a second their own
// way, so they are counted rather than assumed; when ev is not among them
// (--types changed), they are sent again instead of skipped.
func own(ctx context.Context, s Searcher, q Query, ev *auditlogpb.EventUnstructured, after bool) (Resume, error) {
	at := ev.Time.AsTime().UTC()
	key := ""
	for range ownPages {
		evs, next, err := s.SearchUnstructuredEvents(ctx, at, at.Add(q.Window), teleport.Namespace, q.Types,
			q.Batch, types.EventOrderAscending, key)
		if err != nil {
			return Resume{}, fmt.Errorf("find where to resume after the original plugin: %w", err)
		}
		for i, e := range evs {
			if e.Id == ev.Id {
				pos := persistence.AuditPosition{WindowStart: at, Cursor: key, Offset: i}
				how := "at the first event of the original's last page (its id file is empty)"
				if after {
					pos.Offset, pos.LastID, pos.LastTime = i+1, ev.Id, at
					how = "after the original's last sent event"
				}
				return Resume{pos, how}, nil
			}
			if e.Time.AsTime().After(at.Add(time.Second)) {
				next = ""
				break
			}
		}
		if key = next; next == "" {
			break
		}
	}
	return Resume{persistence.AuditPosition{WindowStart: at},
		"from the time of the original's last event, which --types leaves out: the events of that moment are sent again"}, nil
}
