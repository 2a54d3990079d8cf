// Package teleportsrv is a Teleport-compatible test server: it serves the
// real teleport/api gRPC services (proto.AuthService and
// teleport.auditlog.v1.AuditLogService) over mutual TLS, so the daemon talks
// to it with the unmodified api/client, and it injects faults on demand.
package teleportsrv

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gravitational/teleport/api/client/proto"
	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	"github.com/gravitational/teleport/api/types"
	apievents "github.com/gravitational/teleport/api/types/events"
	apiutils "github.com/gravitational/teleport/api/utils"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	protobuf "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

const (
	// DefaultClusterName is the cluster name Ping reports by default; it
	// matches the events GenerateAuditEvents makes.
	DefaultClusterName = "test-cluster"
	// ServerVersion is the Teleport version Ping reports.
	ServerVersion = "18.0.0-dev"
	// defaultLimit and MaxLimit mirror Teleport's page size defaults
	// (defaults.EventsIterationLimit and EventsMaxIterationLimit): its
	// audit log backends refuse a larger limit with BadParameter, "limit N
	// exceeds 10000".
	defaultLimit = 500
	MaxLimit     = 10000
	// MaxPageBytes mirrors Teleport's events.MaxEventBytesInResponse: its
	// backends end a page before the events' size reaches 1 MiB and return
	// a cursor, whatever the limit.
	MaxPageBytes = 1024 * 1024
)

// Config configures Start.
type Config struct {
	// TLS is the server configuration, as from testpki's ServerTLS: it must
	// require and verify client certificates, as Teleport does. ALPN h2 is
	// added by the gRPC credentials.
	TLS *tls.Config
	// Addr to listen on; default 127.0.0.1:0.
	Addr string
	// ClusterName reported by Ping; default DefaultClusterName.
	ClusterName string
	// Export turns on the export API (GetEventExportChunks,
	// ExportUnstructuredEvents). Off by default: both answer Unimplemented,
	// as an older Teleport does, and clients use search. SetExport changes it.
	Export bool
	// ChunksPerDay is how many export chunks a day's events are spread over
	// until the day is listed; default DefaultChunksPerDay.
	ChunksPerDay int
	// Seed makes chunk names and listing order reproducible; default 1.
	Seed int64
}

// Server is a running test Teleport server.
type Server struct {
	cfg  Config
	grpc *grpc.Server
	ln   net.Listener
	quit chan struct{} // closed by Close: ends injected delays
	done chan struct{} // closed when Serve returned
	once sync.Once

	mu         sync.Mutex
	events     []entry // sorted by (time, id)
	ids        map[string]struct{}
	recordings map[string][]*auditlogpb.EventUnstructured
	notYet     map[string]int     // session -> stream attempts still answered NotFound
	broken     map[string]failure // session -> events sent before every stream fails
	locks      []*types.LockV2
	calls      map[string]int
	failures   map[string]failure
	latency    map[string]time.Duration

	export bool
	days   map[string]*day // export chunks by UTC date
	// visibility delays events added from now on by up to this much, at
	// random: what Athena's batches, DynamoDB's eventually consistent index
	// and nodes that buffer their events do to search.
	visibility   time.Duration
	served       int // events search returned
	rng          *rand.Rand
	streamFaults map[string]streamFault
}

type entry struct {
	t    time.Time
	ev   *auditlogpb.EventUnstructured
	size int // what the event counts toward MaxPageBytes
	// visible is when search starts to return it (zero: at once).
	visible time.Time
}

type failure struct {
	n    int
	code codes.Code
}

// Start listens and serves until Close.
func Start(cfg Config) (*Server, error) {
	if cfg.TLS == nil {
		return nil, errors.New("teleportsrv: Config.TLS is required")
	}
	if cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("teleportsrv: Config.TLS must require and verify client certificates, as Teleport does")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = DefaultClusterName
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("teleportsrv: listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		cfg:        cfg,
		ln:         ln,
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		ids:        map[string]struct{}{},
		recordings: map[string][]*auditlogpb.EventUnstructured{},
		notYet:     map[string]int{},
		broken:     map[string]failure{},
		calls:      map[string]int{},
		failures:   map[string]failure{},
		latency:    map[string]time.Duration{},

		export:       cfg.Export,
		days:         map[string]*day{},
		rng:          newRand(cfg.Seed),
		streamFaults: map[string]streamFault{},
	}
	s.grpc = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(cfg.TLS)),
		// The API client pings every few minutes even without streams; the
		// default policy would answer with GOAWAY "too_many_pings".
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		// Close returns only after every handler has: no goroutine outlives it.
		grpc.WaitForHandlers(true),
	)
	proto.RegisterAuthServiceServer(s.grpc, &authService{s: s})
	auditlogpb.RegisterAuditLogServiceServer(s.grpc, &auditLogService{s: s})
	go func() {
		defer close(s.done)
		_ = s.grpc.Serve(ln) // returns when Stop closes the listener
	}()
	return s, nil
}

// Addr is the host:port the server listens on, for --teleport-addr.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server: open connections are closed, running RPCs fail,
// and every goroutine of the server has ended when it returns.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.quit)
		s.grpc.Stop()
		<-s.done
	})
}

// AddEvents adds audit events, converted with apievents.ToUnstructured as
// Teleport does. Events are kept sorted by (time, id); they may be added
// while clients read, and an ID may be added only once.
func (s *Server) AddEvents(evts ...apievents.AuditEvent) error {
	us := make([]*auditlogpb.EventUnstructured, 0, len(evts))
	for _, evt := range evts {
		u, err := apievents.ToUnstructured(evt)
		if err != nil {
			return fmt.Errorf("teleportsrv: convert %s event %s: %w", evt.GetType(), evt.GetID(), err)
		}
		us = append(us, u)
	}
	return s.AddUnstructured(us...)
}

// AddUnstructured adds audit events as they travel, for events that
// ToUnstructured would not make (a NaN in a field, say), with AddEvents'
// rules.
func (s *Server) AddUnstructured(us ...*auditlogpb.EventUnstructured) error {
	add := make([]entry, 0, len(us))
	seen := map[string]struct{}{}
	for _, u := range us {
		if _, dup := seen[u.Id]; dup {
			return fmt.Errorf("teleportsrv: event ID %s given twice", u.Id)
		}
		seen[u.Id] = struct{}{}
		// Teleport counts an event's stored JSON; its protobuf size is
		// near it and cheap to take for a million events.
		add = append(add, entry{t: u.Time.AsTime(), ev: u, size: protobuf.Size(u.Unstructured)})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.visibility > 0 {
		now := time.Now()
		for i := range add {
			add[i].visible = now.Add(time.Duration(s.rng.Int64N(int64(s.visibility))))
		}
	}
	for _, e := range add {
		if _, dup := s.ids[e.ev.Id]; dup {
			return fmt.Errorf("teleportsrv: event ID %s already added", e.ev.Id)
		}
	}
	for _, e := range add {
		s.ids[e.ev.Id] = struct{}{}
	}
	s.events = append(s.events, add...)
	slices.SortStableFunc(s.events, compareEntries)
	s.addToChunks(add)
	return nil
}

// AddRecording appends events to the recording of a session. Each event's
// Index is set to its position in the recording (0, 1, ...), as Teleport
// numbers session events.
func (s *Server) AddRecording(sessionID string, evts ...apievents.AuditEvent) error {
	if sessionID == "" {
		return errors.New("teleportsrv: empty session ID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.recordings[sessionID]
	for i, evt := range evts {
		evt.SetIndex(int64(len(rec) + i))
	}
	add := make([]*auditlogpb.EventUnstructured, 0, len(evts))
	for _, evt := range evts {
		u, err := apievents.ToUnstructured(evt)
		if err != nil {
			return fmt.Errorf("teleportsrv: convert %s event %d of session %s: %w", evt.GetType(), evt.GetIndex(), sessionID, err)
		}
		add = append(add, u)
	}
	s.recordings[sessionID] = append(rec, add...)
	return nil
}

// Events is a copy of the stored audit events in (time, id) order.
func (s *Server) Events() []*auditlogpb.EventUnstructured {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*auditlogpb.EventUnstructured, len(s.events))
	for i, e := range s.events {
		out[i] = protobuf.Clone(e.ev).(*auditlogpb.EventUnstructured)
	}
	return out
}

// Locks are the locks UpsertLock received, in order (an upsert of an
// existing name appears again).
func (s *Server) Locks() []*types.LockV2 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*types.LockV2, len(s.locks))
	for i, l := range s.locks {
		out[i] = apiutils.CloneProtoMsg(l)
	}
	return out
}

// Served is how many events search returned, over all calls: the read
// cost of a client.
func (s *Server) Served() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served
}

// SetVisibilityDelay makes the events added from now on visible to search
// only after a random delay of up to d (0: at once).
func (s *Server) SetVisibilityDelay(d time.Duration) {
	s.mu.Lock()
	s.visibility = d
	s.mu.Unlock()
}

// Calls counts the RPCs received by short method name ("Ping",
// "GetUnstructuredEvents", "StreamUnstructuredSessionEvents", "UpsertLock",
// ...), including those that failed.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// FailNext makes the next n calls of method fail with code, before any work.
// Codes map to trace errors in the client: Unavailable to
// ConnectionProblem, NotFound to NotFound, PermissionDenied to AccessDenied.
func (s *Server) FailNext(method string, n int, code codes.Code) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		delete(s.failures, method)
		return
	}
	s.failures[method] = failure{n: n, code: code}
}

// SetLatency delays every call of method by d (0 removes the delay). The
// delay ends early when the client gives up or the server closes.
func (s *Server) SetLatency(method string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		delete(s.latency, method)
		return
	}
	s.latency[method] = d
}

// SetRecordingAvailableAfter answers the first `calls` attempts to stream the
// session's recording with NotFound, as Teleport does while a recording is
// still being uploaded.
func (s *Server) SetRecordingAvailableAfter(sessionID string, calls int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notYet[sessionID] = calls
}

// BreakRecording makes every stream of the session's recording fail with
// code after sending the events before index `after`: a recording Teleport
// cannot serve past a point, for good.
func (s *Server) BreakRecording(sessionID string, after int, code codes.Code) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broken[sessionID] = failure{n: after, code: code}
}

// before runs for every RPC: it counts the call, applies the injected delay
// and failure.
func (s *Server) before(ctx context.Context, fullMethod string) error {
	method := path.Base(fullMethod)
	s.mu.Lock()
	s.calls[method]++
	delay := s.latency[method]
	var injected error
	if f, ok := s.failures[method]; ok {
		injected = status.Errorf(f.code, "teleportsrv: injected %s failure of %s", f.code, method)
		if f.n--; f.n == 0 {
			delete(s.failures, method)
		} else {
			s.failures[method] = f
		}
	}
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.quit:
			return status.Error(codes.Unavailable, "teleportsrv: server closing")
		}
	}
	return injected
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.before(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.before(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// authService implements the parts of proto.AuthService the daemon uses.
// It is a separate struct from auditLogService: one struct embedding both
// Unimplemented types would have ambiguous promoted methods.
type authService struct {
	proto.UnimplementedAuthServiceServer
	s *Server
}

func (a *authService) Ping(ctx context.Context, _ *proto.PingRequest) (*proto.PingResponse, error) {
	var remote string
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr.String()
	}
	return &proto.PingResponse{
		ClusterName:   a.s.cfg.ClusterName,
		ServerVersion: ServerVersion,
		ServerFeatures: &proto.Features{
			Kubernetes:     true,
			App:            true,
			DB:             true,
			Desktop:        true,
			AccessControls: true,
		},
		ProxyPublicAddr: "teleport.example.com:443",
		RemoteAddr:      remote,
	}, nil
}

func (a *authService) UpsertLock(_ context.Context, lock *types.LockV2) (*emptypb.Empty, error) {
	if err := lock.CheckAndSetDefaults(); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	a.s.locks = append(a.s.locks, lock)
	return &emptypb.Empty{}, nil
}

// latestLocks is the current lock of each name, in order of first upsert.
func (s *Server) latestLocks() []*types.LockV2 {
	var out []*types.LockV2
	idx := map[string]int{}
	for _, l := range s.locks {
		if i, ok := idx[l.GetName()]; ok {
			out[i] = l
			continue
		}
		idx[l.GetName()] = len(out)
		out = append(out, l)
	}
	return out
}

func (a *authService) GetLock(_ context.Context, req *proto.GetLockRequest) (*types.LockV2, error) {
	if req.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "missing lock name")
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	for _, l := range a.s.latestLocks() {
		if l.GetName() == req.Name {
			return l, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "lock %q is not found", req.Name)
}

func (a *authService) GetLocks(_ context.Context, req *proto.GetLocksRequest) (*proto.GetLocksResponse, error) {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	now := time.Now()
	resp := &proto.GetLocksResponse{}
	for _, l := range a.s.latestLocks() {
		if req.InForceOnly && !l.IsInForce(now) {
			continue
		}
		match := len(req.Targets) == 0
		for _, t := range req.Targets {
			if t != nil && t.Match(l) {
				match = true
				break
			}
		}
		if match {
			resp.Locks = append(resp.Locks, l)
		}
	}
	return resp, nil
}

// auditLogService implements teleport.auditlog.v1.AuditLogService.
type auditLogService struct {
	auditlogpb.UnimplementedAuditLogServiceServer
	s *Server
}

// GetUnstructuredEvents serves SearchUnstructuredEvents: events with time in
// [start, end), of the requested types, at most limit (and less than
// MaxPageBytes of them, but at least one), in the requested order, starting
// strictly after the cursor in StartKey. A page full by count or by size
// returns a cursor even if nothing follows; a shorter page returns none.
func (l *auditLogService) GetUnstructuredEvents(_ context.Context, req *auditlogpb.GetUnstructuredEventsRequest) (*auditlogpb.EventsUnstructured, error) {
	if req.Namespace != "" && req.Namespace != "default" {
		return nil, status.Errorf(codes.InvalidArgument, "unknown namespace %q", req.Namespace)
	}
	if req.StartDate == nil || req.EndDate == nil {
		return nil, status.Error(codes.InvalidArgument, "start and end dates are required")
	}
	from, to := req.StartDate.AsTime(), req.EndDate.AsTime()
	limit := int(req.Limit)
	switch {
	case limit < 0:
		return nil, status.Errorf(codes.InvalidArgument, "negative limit %d", limit)
	case limit == 0:
		limit = defaultLimit
	case limit > MaxLimit:
		return nil, status.Errorf(codes.InvalidArgument, "limit %d exceeds %d", limit, MaxLimit)
	}
	// The client casts types.EventOrder into the wire enum, so ascending (0)
	// arrives as ORDER_DESCENDING_UNSPECIFIED: decode it the same way back.
	order := types.EventOrder(req.Order)
	if order != types.EventOrderAscending && order != types.EventOrderDescending {
		return nil, status.Errorf(codes.InvalidArgument, "unknown order %d", req.Order)
	}
	var (
		after  entry
		cursor bool
	)
	if req.StartKey != "" {
		var err error
		if after, err = decodeKey(req.StartKey); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid start key %q: %v", req.StartKey, err)
		}
		cursor = true
	}
	var wanted map[string]bool
	if len(req.EventTypes) > 0 {
		wanted = map[string]bool{}
		for _, t := range req.EventTypes {
			wanted[t] = true
		}
	}

	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	evs := l.s.events
	var page []*auditlogpb.EventUnstructured
	now := time.Now()
	bytes, full := 0, false
	take := func(e entry) bool {
		if (wanted == nil || wanted[e.ev.Type]) && !e.visible.After(now) {
			if len(page) > 0 && bytes+e.size >= MaxPageBytes {
				full = true
				return false
			}
			page = append(page, e.ev)
			bytes += e.size
			l.s.served++
		}
		full = len(page) == limit
		return !full
	}
	if order == types.EventOrderAscending {
		i, _ := slices.BinarySearchFunc(evs, from, func(e entry, t time.Time) int { return e.t.Compare(t) })
		if cursor {
			// Strictly after the cursor.
			j, found := slices.BinarySearchFunc(evs, after, compareEntries)
			if found {
				j++
			}
			i = max(i, j)
		}
		for ; i < len(evs) && evs[i].t.Before(to) && take(evs[i]); i++ {
		}
	} else {
		i, _ := slices.BinarySearchFunc(evs, to, func(e entry, t time.Time) int { return e.t.Compare(t) })
		if cursor {
			// Strictly before the cursor.
			j, _ := slices.BinarySearchFunc(evs, after, compareEntries)
			i = min(i, j)
		}
		for i--; i >= 0 && !evs[i].t.Before(from) && take(evs[i]); i-- {
		}
	}
	resp := &auditlogpb.EventsUnstructured{Items: page}
	if full {
		last := page[len(page)-1]
		resp.LastKey = encodeKey(last.Time.AsTime(), last.Id)
	}
	return resp, nil
}

// StreamUnstructuredSessionEvents streams a recording from StartIndex on.
func (l *auditLogService) StreamUnstructuredSessionEvents(req *auditlogpb.StreamUnstructuredSessionEventsRequest, stream grpc.ServerStreamingServer[auditlogpb.EventUnstructured]) error {
	l.s.mu.Lock()
	pending := l.s.notYet[req.SessionId]
	if pending > 0 {
		l.s.notYet[req.SessionId] = pending - 1
	}
	rec, ok := l.s.recordings[req.SessionId]
	broken, isBroken := l.s.broken[req.SessionId]
	l.s.mu.Unlock()
	if pending > 0 || !ok {
		// Teleport answers trace.NotFound, which travels as codes.NotFound.
		return status.Errorf(codes.NotFound, "session recording %q not found", req.SessionId)
	}
	for _, ev := range rec {
		if ev.Index < int64(req.StartIndex) {
			continue
		}
		if isBroken && ev.Index >= int64(broken.n) {
			return status.Errorf(broken.code, "teleportsrv: recording %q broken at index %d", req.SessionId, ev.Index)
		}
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

func compareEntries(a, b entry) int {
	if c := a.t.Compare(b.t); c != 0 {
		return c
	}
	return strings.Compare(a.ev.Id, b.ev.Id)
}

// SearchCursor is the cursor SearchUnstructuredEvents returns with a full
// page whose last event is (t, id): tests write it where a client would
// have stored it.
func SearchCursor(t time.Time, id string) string { return encodeKey(t, id) }

// A cursor is the (time, id) of the last event returned; clients treat it as
// opaque.
func encodeKey(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.UnixNano(), 10) + "/" + id))
}

func decodeKey(key string) (entry, error) {
	raw, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil {
		return entry{}, err
	}
	ns, id, ok := strings.Cut(string(raw), "/")
	if !ok {
		return entry{}, errors.New("no event ID")
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return entry{}, err
	}
	return entry{t: time.Unix(0, n), ev: &auditlogpb.EventUnstructured{Id: id}}, nil
}
