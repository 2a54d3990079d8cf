// Package kv is the value type of one change to the state file: a key of a
// bucket, put or deleted. It has no dependencies, so that the actors'
// protocol (messages) carries changes to the checkpoint writer without
// importing the store. Package persistence defines every bucket and key and
// applies the changes.
package kv

// Write is one change to the state file.
type Write struct {
	Bucket string
	Key    string
	Value  []byte // nil with Delete
	Delete bool
	// Err is set on a write that could not be built (its record did not
	// encode): it can never be applied, and the checkpoint writer fails the
	// save that carries it instead of retrying it.
	Err error
}
