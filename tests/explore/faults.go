package explore

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/fdfwd/teleport-event-handler/tests/fluentdsrv"
	"github.com/fdfwd/teleport-event-handler/tests/testpki"
)

// action is one step of the schedule: a fault's start or end.
type action struct {
	at   time.Duration
	what string
	do   func()
}

// actions turns the plan's faults into timed steps, and the late events
// into one at the middle of the span.
func (x *explorer) actions() []action {
	var out []action
	for _, f := range x.p.Faults {
		start, end := x.fault(f)
		out = append(out, action{at: f.At, what: f.String(), do: start})
		if end != nil {
			out = append(out, action{at: f.At + f.For, what: fmt.Sprintf("%6.1fs  end of %s", (f.At + f.For).Seconds(), f.Kind), do: end})
		}
	}
	if x.p.Late > 0 {
		out = append(out, action{at: x.p.Span / 2, what: fmt.Sprintf("%6.1fs  %d late events", (x.p.Span / 2).Seconds(), x.p.Late),
			do: func() { x.want.late(x.t, x.e, x.p, x.p.Late) }})
	}
	sortActions(out)
	return out
}

// fault returns how to start and end f (end nil for an instant fault).
func (x *explorer) fault(f Fault) (start, end func()) {
	count := func() { x.injected[f.Kind]++ }
	switch f.Kind {
	case KillNine:
		return func() { x.stop(syscall.SIGKILL, f.Kind); x.start(false) }, nil
	case SigTerm:
		return func() { x.stop(syscall.SIGTERM, f.Kind); x.start(false) }, nil
	case CertSwap:
		return func() { x.swapCertificates(); count() }, nil
	case TeleportDown:
		return func() { x.tp.Down(); count() }, func() { x.tp.Up(x.t) }
	case TeleportSlow:
		return func() { x.e.Teleport.SetLatency(f.Method, f.Delay); count() }, func() { x.e.Teleport.SetLatency(f.Method, 0) }
	case TeleportError:
		return func() { x.e.Teleport.FailNext(f.Method, f.N, grpcCode(f.Code)); count() }, func() { x.e.Teleport.FailNext(f.Method, 0, 0) }
	case Receiver5xx:
		return func() { x.e.Fluentd.SetRandomFailure(float64(f.N)/100, f.Status, int64(x.p.Seed)); count() },
			func() { x.e.Fluentd.SetRandomFailure(0, 0, 0) }
	case ReceiverAll4xx, ReceiverRefuses:
		return func() { x.e.Fluentd.FailFirst(1<<30, f.Status); count() }, func() { x.e.Fluentd.FailFirst(0, 0) }
	case ReceiverSlow:
		return func() { x.e.Fluentd.SetLatency(f.Delay); count() }, func() { x.e.Fluentd.SetLatency(0) }
	case ReceiverResets:
		return func() { x.rx.Toxic(x.t, "reset", "reset_peer", "upstream", map[string]any{"timeout": 50}); count() },
			func() { x.rx.Remove(x.t, "reset") }
	case ReceiverDown:
		return func() { x.rx.Down(); count() }, func() { x.rx.Up(x.t) }
	case DiskFull:
		return x.fillDisk, x.freeDisk
	}
	return x.forwardFault(f)
}

// forwardFault sets one of the forward listener's faults; the others are
// on the same knob, so never at the same time.
func (x *explorer) forwardFault(f Fault) (start, end func()) {
	base := x.forwardBase()
	ff := base
	switch f.Kind {
	case ForwardNoAck:
		ff.DropAcks = f.N
	case ForwardWrongAck:
		ff.WrongAcks = f.N
	case ForwardCut:
		ff.CloseMidMessage = f.N
	case ForwardSilent:
		ff.AckNothing = true
	case ForwardPong:
		ff.RefusePong = true
	}
	return func() { x.e.Fluentd.SetForwardFaults(ff); x.injected[f.Kind]++ }, func() { x.e.Fluentd.SetForwardFaults(base) }
}

// forwardBase is the forward listener without faults: in_forward with a
// chunk_size_limit equal to --fluentd-max-message-kb.
func (x *explorer) forwardBase() fluentdsrv.ForwardFaults {
	return fluentdsrv.ForwardFaults{ChunkSizeLimit: x.p.Limit}
}

func grpcCode(name string) codes.Code {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if c.String() == name {
			return c
		}
	}
	return codes.Unknown
}

// swapCertificates replaces the Fluentd client certificate and key (as a
// renewal does: new files renamed over the old, one after the other) and,
// with an identity file, the identity.
func (x *explorer) swapCertificates() {
	pki := x.e.PKI
	pair, err := pki.NewFluentdClient()
	x.must(err)
	x.must(pair.WriteFiles(pki.FluentdClientCertFile+".new", pki.FluentdClientKeyFile+".new"))
	x.must(os.Rename(pki.FluentdClientCertFile+".new", pki.FluentdClientCertFile))
	x.must(os.Rename(pki.FluentdClientKeyFile+".new", pki.FluentdClientKeyFile))
	if x.p.Identity {
		client, err := pki.NewTeleportClient()
		x.must(err)
		x.must(testpki.WriteIdentityFile(pki.IdentityFile+".new", pki.TeleportCA, client))
		x.must(os.Rename(pki.IdentityFile+".new", pki.IdentityFile))
	}
}

// mountDisk puts the state directory on a small tmpfs of its own, so that
// DiskFull can fill it; false where mounting is not allowed (not root).
func (x *explorer) mountDisk() bool {
	dir := x.e.Storage
	x.must(os.MkdirAll(dir, 0o700))
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", dir).CombinedOutput(); err != nil {
		x.t.Logf("no tmpfs for the state (%v: %s): %s is not injected", err, strings.TrimSpace(string(out)), DiskFull)
		return false
	}
	x.t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return true
}

func (x *explorer) fillDisk() {
	if !x.disk {
		x.notInjected[DiskFull] = "no tmpfs could be mounted (mounting needs root)"
		return
	}
	// dd fails with ENOSPC once the disk is full, as meant.
	_ = exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(x.e.Storage, "filler"), "bs=64k").Run()
	x.injected[DiskFull]++
	x.diskFull = true
}

func (x *explorer) freeDisk() {
	if x.disk {
		x.must(os.RemoveAll(filepath.Join(x.e.Storage, "filler")))
	}
	x.diskFull = false
}
