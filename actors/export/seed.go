package export

import (
	"time"

	"github.com/fdfwd/teleport-event-handler/persistence"
)

// initialState is the walker's state at start: as stored, and on a first
// start of the export path from the search path's acknowledged position
// when there is one (so that switching modes never sends a day again),
// else from --start-time.
func initialState(s *persistence.Store, start time.Time) (persistence.ExportWalker, error) {
	st, resumed, err := s.ExportWalker()
	if err != nil {
		return st, err
	}
	if !resumed {
		st = persistence.ExportWalker{Day: persistence.Day(start), Since: start}
	}
	pos, ok, err := s.AuditPosition()
	if err != nil || !ok {
		return st, err
	}
	// Everything before the search window is delivered, and within it
	// everything up to the last acknowledged event. When search got further
	// than the export (it ran in between), the export starts from there.
	since, after := pos.WindowStart, ""
	if pos.LastTime.After(since) {
		since, after = pos.LastTime, pos.LastID
	}
	if since.After(st.Since) {
		st.Since, st.AfterID = since, after
		if d := persistence.Day(since); d.After(st.Day) {
			st.Day = d
		}
		st.Acked = max(st.Acked, pos.Acked)
	}
	return st, nil
}

// SeedMargin is how far before the export's last caught-up moment search
// resumes when the mode changes: Teleport files events into export chunks
// with some delay, so the newest events may not have been in any chunk.
const SeedMargin = 15 * time.Minute

// SearchSeed returns the position the search path should start from after
// the export path ran: every event before the day the export was walking is
// delivered, and every event before the last time it found all chunks
// settled, so search resumes there rather than from its own older position;
// but not after the day of a chunk not done (half read, or parked), whose
// events are not all delivered.
// ok is false when the search position needs no change.
func SearchSeed(s *persistence.Store) (persistence.AuditPosition, bool, error) {
	st, found, err := s.ExportWalker()
	if err != nil || !found {
		return persistence.AuditPosition{}, false, err
	}
	pos, ok, err := s.AuditPosition()
	if err != nil {
		return persistence.AuditPosition{}, false, err
	}
	seed := persistence.AuditPosition{WindowStart: st.Day, Acked: max(st.Acked, pos.Acked)}
	if at := st.IdleAt.Add(-SeedMargin); at.After(seed.WindowStart) {
		// The export had caught up then: search starts a margin before,
		// for events Teleport had not yet put in a chunk.
		seed.WindowStart = at
	}
	open, err := s.ExportInProgress()
	if err != nil {
		return persistence.AuditPosition{}, false, err
	}
	for _, c := range open {
		// The export moved on without finishing this chunk (a late chunk
		// of an earlier day half read, or one parked): search reads its
		// day again, sending the rest of that day twice rather than losing
		// the chunk's events.
		if c.Ref.Day.Before(seed.WindowStart) {
			seed.WindowStart = c.Ref.Day
		}
	}
	if seed.WindowStart.Before(st.Since) {
		// The export never got past its start: keep to it.
		seed.WindowStart = st.Since
	}
	if ok && !seed.WindowStart.After(pos.WindowStart) {
		return persistence.AuditPosition{}, false, nil
	}
	return seed, true, nil
}
