// Package explore is the fault explorer: for each seed it draws a random but
// reproducible workload (an audit log read by search or by export,
// recordings, failed-login bursts, events of every size and some that do
// not encode) and a schedule of faults over time (Teleport and the receiver
// down, slow or failing, over HTTP and forward; kill -9 and SIGTERM; a full
// state disk; certificates swapped), runs the real daemon through them, and
// once the faults stop and the daemon has caught up checks invariants that
// hold whatever was drawn: every event accounted for, nothing counted
// delivered that the receiver did not accept, duplicates within the
// in-flight bound, the run ends with the documented status, no event body
// in the logs, a small state file. docs/explore.md describes them.
package explore

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The faults the explorer injects. Instant faults (kills, swaps) have no
// duration; the others last a while and are then undone.
const (
	KillNine        Kind = "kill -9"
	SigTerm         Kind = "SIGTERM and restart"
	TeleportDown    Kind = "teleport down"
	TeleportSlow    Kind = "teleport slow"
	TeleportError   Kind = "teleport RPC errors"
	Receiver5xx     Kind = "receiver 5xx"
	ReceiverAll4xx  Kind = "receiver 4xx for all"
	ReceiverRefuses Kind = "receiver 3xx/401/403"
	ReceiverSlow    Kind = "receiver slow"
	ReceiverResets  Kind = "connection resets"
	ReceiverDown    Kind = "receiver down"
	ForwardNoAck    Kind = "forward: ack lost"
	ForwardWrongAck Kind = "forward: wrong-chunk acks"
	ForwardSilent   Kind = "forward: no acks at all"
	ForwardCut      Kind = "forward: cut mid-message"
	ForwardPong     Kind = "forward: PONG fails"
	DiskFull        Kind = "state disk full"
	CertSwap        Kind = "certificates swapped"
	// Reject4xx is the receiver rejecting some events for good: a property
	// of those events (it is drawn with the workload), not a window.
	Reject4xx Kind = "receiver 4xx for one event"
)

// kinds is every kind in the order of the table.
var kinds = []Kind{KillNine, SigTerm, TeleportDown, TeleportSlow, TeleportError, Receiver5xx, ReceiverAll4xx,
	ReceiverRefuses, ReceiverSlow, ReceiverResets, ReceiverDown, ForwardNoAck, ForwardWrongAck, ForwardSilent,
	ForwardCut, ForwardPong, DiskFull, CertSwap, Reject4xx}

// knob is what a fault turns: faults on one knob never overlap.
var knob = map[Kind]string{
	KillNine: "process", SigTerm: "process", TeleportDown: "teleport-net", TeleportSlow: "teleport-latency",
	TeleportError: "teleport-errors", Receiver5xx: "receiver-random", ReceiverAll4xx: "receiver-status",
	ReceiverRefuses: "receiver-status", ReceiverSlow: "receiver-latency", ReceiverResets: "receiver-net",
	ReceiverDown: "receiver-net", ForwardNoAck: "forward", ForwardWrongAck: "forward", ForwardSilent: "forward",
	ForwardCut: "forward", ForwardPong: "forward", DiskFull: "disk", CertSwap: "certs",
}

// losesAnswers are the faults that may lose the answer to a request the
// receiver stored: each may resend what was in flight, as a stop may.
var losesAnswers = map[Kind]bool{ReceiverResets: true, ReceiverDown: true,
	ForwardNoAck: true, ForwardWrongAck: true, ForwardSilent: true, ForwardCut: true}

// Fault is one fault of a schedule.
type Fault struct {
	Kind Kind
	At   time.Duration // from the first start of the daemon
	For  time.Duration // zero for an instant fault
	// Status is the HTTP status of a receiver fault; Code the gRPC code
	// of a Teleport error; Method the RPC it hits; N a count (errors,
	// acks); Delay a latency.
	Status int
	Code   string
	Method string
	N      int
	Delay  time.Duration
}

func (f Fault) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6.1fs  %s", f.At.Seconds(), f.Kind)
	if f.For > 0 {
		fmt.Fprintf(&b, " for %.1fs", f.For.Seconds())
	}
	switch {
	case f.Status != 0:
		fmt.Fprintf(&b, " (%d)", f.Status)
	case f.Code != "":
		fmt.Fprintf(&b, " (%s x%d on %s)", f.Code, f.N, f.Method)
	case f.Delay > 0:
		fmt.Fprintf(&b, " (%s on %s)", f.Delay, cmp(f.Method, "every answer"))
	case f.N > 0:
		fmt.Fprintf(&b, " (%d)", f.N)
	}
	return b.String()
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Session is a recording of the workload.
type Session struct {
	Name   string
	Events int
	// Missing: the upload event is there, the recording never comes.
	Missing bool
	// BreakAt >= 0: every stream of it fails for good at that index.
	BreakAt int
}

// Plan is one seed's workload and fault schedule.
type Plan struct {
	Seed  uint64
	Short bool

	Export    bool // the export API, else search
	Forward   bool // forward://, else HTTP
	SharedKey bool // forward with a shared-key handshake
	Identity  bool // an identity file, reloaded every second
	Debug     bool // --debug: the logs checked at every level
	AllTypes  bool // --skip-session-types "": print events too

	Audit    int // events of history
	Days     int // days the history spans
	Sessions []Session
	// Logins are failed-login bursts near now: user -> failures.
	Logins []Login
	// Limit is the receiver's limit (in_http's body_size_limit, or
	// in_forward's chunk_size_limit and --fluentd-max-message-kb) in bytes;
	// Sizes are events sized around it (over it: dead-lettered).
	Limit int
	Sizes []int
	// Odd are events with invalid UTF-8 and NaNs in their fields.
	Odd int
	// Rejected events are refused for good by the receiver (400).
	Rejected int
	// Late events come during the run: visible to search late, or in late
	// export chunks.
	Late int

	Span   time.Duration // the time faults are injected over
	Faults []Fault
	// cut is what Cut took away from the seed's plan, for the replay.
	cut string
}

// Login is a burst of failed logins by one user.
type Login struct {
	User     string
	Failures int
}

// NewPlan draws seed's plan: the same seed, the same plan.
func NewPlan(seed uint64, short bool) Plan {
	r := rand.New(rand.NewPCG(seed, 0x6578706c6f7265))
	p := Plan{Seed: seed, Short: short, Export: r.IntN(2) == 0, Forward: r.IntN(2) == 0,
		Identity: r.IntN(3) == 0, Debug: r.IntN(3) == 0, AllTypes: r.IntN(2) == 0}
	p.SharedKey = p.Forward && r.IntN(2) == 0
	p.workload(r)
	p.Span = time.Duration(20+r.IntN(40)) * time.Second
	if short {
		p.Span = time.Duration(6+r.IntN(5)) * time.Second
	}
	p.schedule(r)
	return p
}

func (p *Plan) workload(r *rand.Rand) {
	scale := 1
	if !p.Short {
		scale = 5
	}
	p.Audit = 50 + r.IntN(500*scale)
	p.Days = 1 + r.IntN(3)
	for i := range r.IntN(2 + scale) {
		s := Session{Name: fmt.Sprintf("rec-%d", i), Events: 2 + r.IntN(300*scale), BreakAt: -1}
		switch x := r.IntN(10); {
		case x == 0:
			s.Missing = true
		case x == 1 && !p.Short:
			s.BreakAt = r.IntN(s.Events)
		}
		p.Sessions = append(p.Sessions, s)
	}
	for i := range r.IntN(4) {
		l := Login{User: fmt.Sprintf("user-%d", i), Failures: 1 + r.IntN(6)}
		if r.IntN(4) == 0 {
			l.User = strings.Repeat("x", 1025+r.IntN(3000)) // longer than a name the lock policy counts
		}
		p.Logins = append(p.Logins, l)
	}
	p.Limit = (64 + r.IntN(192)) << 10
	for range r.IntN(4) {
		// Just under (by up to 4 KiB, beyond the JSON around the field) or
		// just over the limit.
		d := 4096 + r.IntN(4096)
		if r.IntN(2) == 0 {
			d = -(1024 + r.IntN(4096))
		}
		p.Sizes = append(p.Sizes, p.Limit-d)
	}
	p.Odd = r.IntN(4)
	p.Rejected = r.IntN(6)
	p.Late = r.IntN(40)
}

// schedule draws the faults: a count, then for each a kind that applies to
// the plan, a time and a length, never overlapping another on its knob.
func (p *Plan) schedule(r *rand.Rand) {
	n := 2 + r.IntN(4)
	if !p.Short {
		n = 4 + r.IntN(10)
	}
	var applicable []Kind
	for _, k := range kinds {
		if p.applies(k) {
			applicable = append(applicable, k)
		}
	}
	for range n {
		k := applicable[r.IntN(len(applicable))]
		f := Fault{Kind: k}
		if _, instant := map[Kind]bool{KillNine: true, SigTerm: true, CertSwap: true}[k]; !instant {
			f.For = time.Duration(500+r.IntN(int(p.Span/time.Millisecond)/2)) * time.Millisecond
		}
		f.params(r, p)
		for range 10 {
			f.At = time.Duration(300+r.IntN(int((p.Span-f.For)/time.Millisecond)-300)) * time.Millisecond
			if !p.overlaps(f) {
				p.Faults = append(p.Faults, f)
				break
			}
		}
	}
	slices.SortStableFunc(p.Faults, func(a, b Fault) int { return int(a.At - b.At) })
}

func (p *Plan) applies(k Kind) bool {
	switch k {
	case Reject4xx:
		return false // drawn with the workload
	case ForwardNoAck, ForwardWrongAck, ForwardSilent, ForwardCut:
		return p.Forward
	case ForwardPong:
		return p.SharedKey
	case Receiver5xx, ReceiverAll4xx, ReceiverRefuses, ReceiverSlow:
		return !p.Forward
	}
	return true
}

func (p *Plan) overlaps(f Fault) bool {
	for _, g := range p.Faults {
		if knob[g.Kind] != knob[f.Kind] {
			continue
		}
		// Instant faults of one knob stay a second apart.
		gEnd, fEnd := g.At+max(g.For, time.Second), f.At+max(f.For, time.Second)
		if f.At < gEnd && g.At < fEnd {
			return true
		}
	}
	return false
}

var rpcs = []string{"GetUnstructuredEvents", "ExportUnstructuredEvents", "GetEventExportChunks", "StreamUnstructuredSessionEvents", "UpsertLock"}

func (f *Fault) params(r *rand.Rand, p *Plan) {
	switch f.Kind {
	case TeleportSlow:
		f.Method, f.Delay = rpcs[r.IntN(len(rpcs))], time.Duration(50+r.IntN(1500))*time.Millisecond
	case TeleportError:
		f.Method, f.N = rpcs[r.IntN(len(rpcs))], 1+r.IntN(6)
		f.Code = []string{"Unavailable", "Internal", "ResourceExhausted", "DeadlineExceeded", "Unknown"}[r.IntN(5)]
	case Receiver5xx:
		f.Status = []int{500, 502, 503, 504}[r.IntN(4)]
		f.N = 10 + r.IntN(90) // percent of requests
	case ReceiverAll4xx:
		f.Status = []int{400, 400, 413, 422}[r.IntN(4)]
	case ReceiverRefuses:
		f.Status = []int{301, 302, 307, 401, 403}[r.IntN(5)]
	case ReceiverSlow:
		f.Delay = time.Duration(50+r.IntN(2000)) * time.Millisecond
	case ForwardNoAck, ForwardWrongAck, ForwardCut:
		f.N = 1 + r.IntN(5)
	}
}

// Cut takes away from the plan, for shrinking: "f3" drops the fourth
// fault, "a100" draws at most 100 events of history; several are
// separated by commas, and add up to what was cut before.
func (p Plan) Cut(cut string) (Plan, error) {
	for _, c := range strings.Split(cut, ",") {
		n, err := strconv.Atoi(c[min(1, len(c)):])
		switch {
		case err != nil || n < 0:
			return p, fmt.Errorf("%q: want f<fault> or a<events>", c)
		case c[0] == 'f' && n < len(p.Faults):
			p.Faults = slices.Delete(slices.Clone(p.Faults), n, n+1)
		case c[0] == 'a' && n > 0:
			p.Audit = min(p.Audit, n)
		default:
			return p, fmt.Errorf("%q: no such fault, or not f<fault> or a<events>", c)
		}
		p.cut = strings.TrimPrefix(p.cut+","+c, ",")
	}
	return p, nil
}

// Timeline is the schedule, one fault a line.
func (p Plan) Timeline() string {
	var b strings.Builder
	for _, f := range p.Faults {
		b.WriteString(f.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Describe is the workload in a line.
func (p Plan) Describe() string {
	path, transport := "search", "http"
	if p.Export {
		path = "export"
	}
	if p.Forward {
		transport = "forward"
		if p.SharedKey {
			transport += "+key"
		}
	}
	missing, broken, events := 0, 0, 0
	for _, s := range p.Sessions {
		events += s.Events
		if s.Missing {
			missing++
		}
		if s.BreakAt >= 0 {
			broken++
		}
	}
	return fmt.Sprintf("%s over %s; %d audit events over %d day(s), %d late; %d recording(s) of %d events (%d missing, %d broken); "+
		"%d login burst(s); %d sized around %d KiB; %d odd; %d rejected", path, transport, p.Audit, p.Days, p.Late,
		len(p.Sessions), events, missing, broken, len(p.Logins), len(p.Sizes), p.Limit>>10, p.Odd, p.Rejected)
}
