package supervisor

import "github.com/fdfwd/teleport-event-handler/actors/faults"

// Fault is every actor's fault hook (package faults): it panics if a panic
// is armed for kind, or for one of more (a player's own kind, by recording),
// and msg is an ordinary message; in a normal run it is an atomic load. It
// returns msg, so that it can head an actor's Receive:
//
//	switch m := supervisor.Fault(timer.Message(ctx), Name).(type) {
//
// Each actor calls it in one place, where its work can fail: on receipt for
// those whose work survives a failure on any message (the readers reload
// from the store, a connection's jobs are held by the pool); in the pool
// just after a delivery is in its queue, which survives a restart; at the
// write for the checkpoint writer, whose queue survives a failed write but
// not a lost Save.
func Fault(msg any, kind string, more ...string) any {
	if !faults.Armed() {
		return msg
	}
	for _, k := range more {
		faults.Inject(k, msg)
	}
	faults.Inject(kind, msg)
	return msg
}
