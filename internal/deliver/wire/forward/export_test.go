package forward

import "time"

// SetHeloWait shortens the transport's wait for a HELO (HeloWait), so
// that a test of a silent or slow server takes milliseconds.
func (f *Transport) SetHeloWait(d time.Duration) { f.heloWait = d }
