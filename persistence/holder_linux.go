package persistence

import (
	"fmt"
	"io/fs"
	"syscall"
)

// lockName is the file as /proc/locks names it: major:minor:inode, the
// device numbers in hex.
func lockName(info fs.FileInfo) (string, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return "", false
	}
	dev := st.Dev
	major := (dev>>8)&0xfff | (dev>>32)&^uint64(0xfff)
	minor := dev&0xff | (dev>>12)&^uint64(0xff)
	return fmt.Sprintf("%02x:%02x:%d", major, minor, st.Ino), true
}
