package explore

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/fdfwd/teleport-event-handler/internal/operate/status"
	"github.com/fdfwd/teleport-event-handler/persistence"
	"github.com/fdfwd/teleport-event-handler/tests/harness"
)

// Bounds on what one stop or one lost answer may resend, from the
// defaults (docs/operations.md, "Stopping, restarting, dead letters"): the
// audit window and each of 5 players' window; over forward, 4 messages of
// 100 events on each of 10 connections, and each player's share of 4 x 1,000.
const (
	httpWindow    = 256 + 5*32
	forwardWindow = 4000 + 5*800
	// maxStateBytes is the most the state file may take for any workload.
	maxStateBytes = 1 << 20
)

// account is where the events ended up, read once the last run exited.
type account struct {
	got      map[string]int           // audit event ID -> copies received
	sessions map[string]map[int64]int // session ID -> index -> copies
	letters  map[string]persistence.DeadLetter
	owed     []string // letters taken back and still in the file
	givenUp  map[string]bool
	parked   map[string]bool // audit event IDs in parked export chunks
	report   status.Report
}

// check reads where every event ended up and checks the invariants.
func (x *explorer) check(exit int, line exitLine) {
	a := x.read()
	x.accounted(a)
	x.deadLettered(a)
	x.exitStatus(exit, line, a)
	x.duplicates(a)
	x.logs()
	x.stateSize()
}

func (x *explorer) read() *account {
	x.want.recordings(x.e, x.p)
	a := &account{got: x.e.Fluentd.CountByUID(), sessions: map[string]map[int64]int{},
		letters: map[string]persistence.DeadLetter{}, givenUp: map[string]bool{}, parked: map[string]bool{}}
	for sid := range x.want.sessions {
		a.sessions[sid] = map[int64]int{}
		for _, raw := range x.e.Fluentd.Records(harness.SessionTag(sid)) {
			var r struct{ EI int64 }
			if json.Unmarshal(raw, &r) == nil {
				a.sessions[sid][r.EI]++
			}
		}
	}
	dir := persistence.Dir(x.e.Storage, x.e.TeleportAddr)
	letters, bad, err := persistence.NewDeadLetters(dir).Letters()
	x.must(err)
	if len(bad) > 0 {
		x.violate("every event accounted for", fmt.Sprintf("%d line(s) of the dead-letter file are not letters", len(bad)))
	}
	for _, l := range letters {
		id := letterKey(l)
		if l.TakenBack {
			a.owed = append(a.owed, id)
		}
		a.letters[id] = l
	}
	x.must(json.Unmarshal(x.command("status", "--json"), &a.report))
	for _, l := range strings.Split(string(x.command("sessions", "list")), "\n") {
		if sid, _, ok := strings.Cut(l, "  given up"); ok {
			a.givenUp[sid] = true
		}
	}
	if a.report.Export != nil {
		x.parked(a)
	}
	return a
}

// letterKey is the event a letter holds: its ID, or session/index.
func letterKey(l persistence.DeadLetter) string {
	if l.EventID != "" {
		return l.EventID
	}
	var ev struct {
		SID string `json:"sid"`
		EI  int64  `json:"ei"`
	}
	_ = json.Unmarshal(l.Event, &ev)
	return fmt.Sprintf("%s/%d", ev.SID, ev.EI)
}

func (x *explorer) parked(a *account) {
	names := map[string]bool{}
	for _, c := range a.report.Export.Parked {
		names[c.Chunk] = true
	}
	for _, c := range x.e.Teleport.ExportChunks() {
		if names[c.Name] {
			for _, id := range c.IDs {
				a.parked[id] = true
			}
		}
	}
}

// command runs one of the daemon's commands on the seed's state.
func (x *explorer) command(name string, args ...string) []byte {
	full := append([]string{name}, x.args(harness.FreeAddr(x.t), false)[1:]...)
	full = slices.DeleteFunc(full, func(s string) bool { return s == "--lock-enabled" })
	full = dropFlag(full, "--metrics-addr")
	cmd := exec.Command(x.e.Binary, append(full, args...)...)
	cmd.Env = append(os.Environ(), x.env()...)
	out, err := cmd.Output()
	if err != nil {
		x.t.Fatalf("%s %s: %v\n%s", x.e.Binary, name, err, out)
	}
	return out
}

func dropFlag(args []string, flag string) []string {
	for i := range args {
		if args[i] == flag && i+1 < len(args) {
			return append(args[:i:i], args[i+2:]...)
		}
	}
	return args
}

// accounted: every event is at the receiver, in the dead-letter file, in
// a recording given up, or in a parked chunk.
func (x *explorer) accounted(a *account) {
	x.checked++
	var lost []string
	for _, id := range x.want.audit {
		_, lettered := a.letters[id]
		if a.got[id] == 0 && !lettered && !a.parked[id] {
			lost = append(lost, id)
		}
	}
	for sid, idx := range x.want.sessions {
		for _, i := range idx {
			_, lettered := a.letters[fmt.Sprintf("%s/%d", sid, i)]
			if a.sessions[sid][i] == 0 && !lettered && !a.givenUp[sid] {
				lost = append(lost, fmt.Sprintf("%s/%d", sid, i))
			}
		}
	}
	if len(lost) > 0 {
		x.violate("every event accounted for", fmt.Sprintf("%d event(s) neither at the receiver, nor dead-lettered, nor in a recording given up or a parked chunk", len(lost)), lost...)
	}
	var notGivenUp []string
	for sid := range x.want.missing {
		if !a.givenUp[sid] {
			notGivenUp = append(notGivenUp, sid)
		}
	}
	if len(notGivenUp) > 0 {
		x.violate("every event accounted for", "recordings Teleport never had were not given up", notGivenUp...)
	}
	if len(a.owed) > 0 {
		x.violate("every event accounted for", fmt.Sprintf("%d letter(s) taken back are still owed after catching up", len(a.owed)), a.owed...)
	}
}

// deadLettered: only what the receiver refused for good is dead-lettered,
// and only recordings that cannot be streamed are given up.
func (x *explorer) deadLettered(a *account) {
	x.checked += 2
	var wrong []string
	for id, l := range a.letters {
		if _, ok := x.want.mayDeadLetter[id]; !ok && !l.TakenBack {
			wrong = append(wrong, fmt.Sprintf("%s (%d: %.80s)", id, l.Status, l.Reason))
		}
	}
	if len(wrong) > 0 {
		x.violate("nothing dead-lettered that the receiver did not refuse for good", fmt.Sprintf("%d letter(s)", len(wrong)), wrong...)
	}
	var gaveUp []string
	for sid := range a.givenUp {
		if !x.want.missing[sid] && !x.want.broken[sid] {
			gaveUp = append(gaveUp, sid)
		}
	}
	if len(gaveUp) > 0 {
		x.violate("only recordings Teleport cannot serve given up", fmt.Sprintf("%d recording(s) given up", len(gaveUp)), gaveUp...)
	}
}

// exitStatus: 3 when something was left undone (dead-lettered in the
// run, given up, parked), else 0.
func (x *explorer) exitStatus(exit int, line exitLine, a *account) {
	if exit != 0 && exit != 3 {
		return // reported by finish
	}
	x.checked++
	parked := 0
	if a.report.Export != nil {
		parked = len(a.report.Export.Parked)
	}
	undone := line.DeadLettered > 0 || len(a.givenUp) > 0 || parked > 0
	if undone != (exit == 3) {
		x.violate("the run ends", fmt.Sprintf("the last run exited %d with %d dead-lettered in it, %d recording(s) given up, %d chunk(s) parked",
			exit, line.DeadLettered, len(a.givenUp), parked))
	}
}

// duplicates: at most one window resent per stop or lost answer.
func (x *explorer) duplicates(a *account) {
	x.checked++
	dups, window := 0, httpWindow
	if x.p.Forward {
		window = forwardWindow
	}
	for _, id := range x.want.audit {
		dups += max(0, a.got[id]-1)
	}
	for _, copies := range a.sessions {
		for _, n := range copies {
			dups += max(0, n-1)
		}
	}
	losses := x.stops
	for k, n := range x.injected {
		if losesAnswers[k] {
			losses += n
		}
	}
	if dups > losses*window {
		x.violate("duplicates within the in-flight bound", fmt.Sprintf("%d duplicates after %d stops or lost answers (bound %d x %d)", dups, losses, losses, window))
	}
}

// logs: no event body in any run's output, at any level.
func (x *explorer) logs() {
	x.checked++
	for i, r := range x.runs {
		out := r.proc.Output()
		if at := strings.Index(out, x.want.canary); at >= 0 {
			start := strings.LastIndexByte(out[:at], '\n') + 1
			x.violate("no event body in the logs", fmt.Sprintf("run %d logged an event's field: %.300s", i+1, out[start:]))
			return
		}
	}
}

func (x *explorer) stateSize() {
	x.checked++
	path := filepath.Join(persistence.Dir(x.e.Storage, x.e.TeleportAddr), "state.db")
	fi, err := os.Stat(path)
	x.must(err)
	if fi.Size() >= maxStateBytes {
		x.violate("the state file stays under 1 MiB", fmt.Sprintf("state.db is %d bytes: %s", fi.Size(), buckets(path)))
	}
}

// buckets tells what takes the room in a state file: each bucket's keys
// and bytes in use.
func buckets(path string) string {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err.Error()
	}
	defer db.Close()
	var parts []string
	_ = db.View(func(tx *bolt.Tx) error {
		parts = append(parts, fmt.Sprintf("%d bytes in use", tx.Size()))
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			st := b.Stats()
			parts = append(parts, fmt.Sprintf("%s: %d keys, %d bytes of %d", name, st.KeyN, st.LeafInuse, st.LeafAlloc))
			return nil
		})
	})
	return strings.Join(parts, "; ")
}
