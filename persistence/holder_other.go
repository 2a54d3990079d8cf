//go:build !linux

package persistence

import "io/fs"

// lockName: only Linux lists its locks (/proc/locks).
func lockName(fs.FileInfo) (string, bool) { return "", false }
