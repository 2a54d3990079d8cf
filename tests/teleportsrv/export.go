package teleportsrv

import (
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The export API (GetEventExportChunks, ExportUnstructuredEvents) is modelled
// on Teleport's Athena backend: the events of one UTC day are spread over
// several chunks; a chunk that a client has seen listed (or read) is sealed
// and never changes again, so events added later for the same day, even a
// past one, land in new chunks ("late chunks"). Within a chunk events are in
// (time, id) order; across chunks they are not.

// DefaultChunksPerDay is the number of open chunks a day's events are spread
// over when Config.ChunksPerDay is zero.
const DefaultChunksPerDay = 3

type chunk struct {
	name   string
	sealed bool
	events []entry // sorted by (time, id) while open; fixed once sealed
}

type day struct {
	chunks []*chunk // in creation order
	open   []*chunk // unsealed chunks receiving new events
	next   int      // sequence for chunk names
}

type streamFault struct {
	after int // items sent before the failure
	code  codes.Code
}

// dayKey is the UTC date of t, as the export API uses it.
func dayKey(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// addToChunks files events into the open chunks of their day. Called with
// s.mu held.
func (s *Server) addToChunks(add []entry) {
	per := s.cfg.ChunksPerDay
	if per <= 0 {
		per = DefaultChunksPerDay
	}
	touched := map[*chunk]bool{}
	for _, e := range add {
		k := dayKey(e.t)
		d := s.days[k]
		if d == nil {
			d = &day{}
			s.days[k] = d
		}
		for len(d.open) < per {
			d.next++
			c := &chunk{name: fmt.Sprintf("%s-%04d-%08x", k, d.next, s.rng.Uint32())}
			d.chunks = append(d.chunks, c)
			d.open = append(d.open, c)
		}
		h := fnv.New32a()
		h.Write([]byte(e.ev.Id))
		c := d.open[h.Sum32()%uint32(len(d.open))]
		c.events = append(c.events, e)
		touched[c] = true
	}
	for c := range touched {
		slices.SortStableFunc(c.events, compareEntries)
	}
}

// seal closes every open chunk of a day that holds events: later events of
// that day go to new chunks. Called with s.mu held.
func (d *day) seal() {
	var still []*chunk
	for _, c := range d.open {
		if len(c.events) > 0 {
			c.sealed = true
			continue
		}
		still = append(still, c)
	}
	d.open = still
}

// SetExport switches the export API on or off at run time (Config.Export is
// the initial state). Off, both export RPCs answer Unimplemented, as a
// Teleport server older than the API does.
func (s *Server) SetExport(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.export = on
}

// FailStreamAfter makes the next stream of method (only
// "ExportUnstructuredEvents" is supported) fail with code after sending
// `after` items.
func (s *Server) FailStreamAfter(method string, after int, code codes.Code) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streamFaults[method] = streamFault{after: after, code: code}
}

// ExportChunk describes one chunk for tests.
type ExportChunk struct {
	Day    string // YYYY-MM-DD
	Name   string
	Sealed bool
	IDs    []string // event IDs in chunk order
}

// ExportChunks is the server's chunk layout, day by day in date order, then
// in chunk creation order; empty chunks are left out.
func (s *Server) ExportChunks() []ExportChunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.days))
	for k := range s.days {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []ExportChunk
	for _, k := range keys {
		for _, c := range s.days[k].chunks {
			if len(c.events) == 0 {
				continue
			}
			ec := ExportChunk{Day: k, Name: c.name, Sealed: c.sealed}
			for _, e := range c.events {
				ec.IDs = append(ec.IDs, e.ev.Id)
			}
			out = append(out, ec)
		}
	}
	return out
}

func (s *Server) exportOn() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.export
}

// GetEventExportChunks lists the non-empty chunks of the request's UTC day in
// no particular order, sealing them.
func (l *auditLogService) GetEventExportChunks(req *auditlogpb.GetEventExportChunksRequest, stream grpc.ServerStreamingServer[auditlogpb.EventExportChunk]) error {
	if !l.s.exportOn() {
		return status.Error(codes.Unimplemented, "method GetEventExportChunks not implemented")
	}
	if req.Date == nil {
		return status.Error(codes.InvalidArgument, "date is required")
	}
	k := dayKey(req.Date.AsTime())
	l.s.mu.Lock()
	var names []string
	if d := l.s.days[k]; d != nil {
		d.seal()
		for _, c := range d.chunks {
			if c.sealed {
				names = append(names, c.name)
			}
		}
	}
	l.s.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	l.s.mu.Unlock()
	for _, n := range names {
		if err := stream.Send(&auditlogpb.EventExportChunk{Chunk: n}); err != nil {
			return err
		}
	}
	return nil
}

// ExportUnstructuredEvents streams one sealed chunk from just after the
// cursor; each item carries the cursor to resume after it.
func (l *auditLogService) ExportUnstructuredEvents(req *auditlogpb.ExportUnstructuredEventsRequest, stream grpc.ServerStreamingServer[auditlogpb.ExportEventUnstructured]) error {
	if !l.s.exportOn() {
		return status.Error(codes.Unimplemented, "method ExportUnstructuredEvents not implemented")
	}
	if req.Date == nil || req.Chunk == "" {
		return status.Error(codes.InvalidArgument, "date and chunk are required")
	}
	k := dayKey(req.Date.AsTime())
	l.s.mu.Lock()
	var c *chunk
	if d := l.s.days[k]; d != nil {
		for _, x := range d.chunks {
			if x.name == req.Chunk {
				c = x
				break
			}
		}
		if c != nil && !c.sealed && len(c.events) > 0 {
			// Reading a chunk seals it as listing does.
			d.seal()
		}
	}
	var evs []entry
	if c != nil {
		evs = c.events // sealed: never modified again
	}
	fault, faulty := l.s.streamFaults["ExportUnstructuredEvents"]
	if faulty {
		delete(l.s.streamFaults, "ExportUnstructuredEvents")
	}
	l.s.mu.Unlock()
	if c == nil {
		return status.Errorf(codes.NotFound, "chunk %q of %s not found", req.Chunk, k)
	}
	from := 0
	if req.Cursor != "" {
		var err error
		if from, err = decodeChunkCursor(req.Cursor, c.name, len(evs)); err != nil {
			return status.Errorf(codes.InvalidArgument, "invalid cursor %q: %v", req.Cursor, err)
		}
	}
	sent := 0
	for i := from; i < len(evs); i++ {
		if faulty && sent == fault.after {
			return status.Errorf(fault.code, "teleportsrv: injected %s failure of ExportUnstructuredEvents after %d events", fault.code, sent)
		}
		if err := stream.Send(&auditlogpb.ExportEventUnstructured{Event: evs[i].ev, Cursor: encodeChunkCursor(c.name, i+1)}); err != nil {
			return err
		}
		sent++
	}
	if faulty && sent == fault.after {
		return status.Errorf(fault.code, "teleportsrv: injected %s failure of ExportUnstructuredEvents after %d events", fault.code, sent)
	}
	return nil
}

// ChunkCursor is the cursor ExportUnstructuredEvents gives with the event at
// position next-1 of a chunk (0-based): reading from it resumes at event
// next. Tests write it where a client would have stored it.
func ChunkCursor(chunk string, next int) string { return encodeChunkCursor(chunk, next) }

// A chunk cursor is the chunk name and the position after the last event
// sent; clients treat it as opaque.
func encodeChunkCursor(chunk string, next int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(chunk + "#" + strconv.Itoa(next)))
}

func decodeChunkCursor(cursor, chunk string, n int) (int, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, err
	}
	name, pos, ok := strings.Cut(string(raw), "#")
	if !ok {
		return 0, errors.New("no position")
	}
	if name != chunk {
		return 0, fmt.Errorf("cursor of chunk %q", name)
	}
	i, err := strconv.Atoi(pos)
	if err != nil {
		return 0, err
	}
	if i < 0 || i > n {
		return 0, fmt.Errorf("position %d outside [0, %d]", i, n)
	}
	return i, nil
}

func newRand(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
}
