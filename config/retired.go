package config

import (
	"fmt"
	"strings"
)

// retiredSettings are the values of the original plugin's retired options.
type retiredSettings struct {
	namespace     string
	teleportDebug bool
}

// retiredNamespace: the original's configure wrote namespace = "default"
// until Teleport kept a single audit-log namespace; a configuration from
// then still carries it. "default" is what is read anyway; another value
// named events that no Teleport of today holds, so it is refused rather
// than ignored.
func retiredNamespace(text string) (warning, problem, fix string) {
	if strings.TrimSpace(text) == "default" {
		return `namespace is retired and can be removed: the audit log has only the "default" namespace, which is always read`, "", ""
	}
	return "", `Teleport's audit log has only the "default" namespace, so no other can be read (this is why the original plugin dropped the setting)`,
		`remove it (or set it to "default")`
}

// retiredTeleportDebug: --teleport-debug was the first name of the
// original's debug logging setting before it became --debug (-d,
// FDFWD_DEBUG, debug in the file); it does the same.
func retiredTeleportDebug(text string) (warning, problem, fix string) {
	return "--teleport-debug is retired: use --debug (-d, FDFWD_DEBUG, or debug = true in the file), which it sets", "", ""
}

// applyRetired turns the retired options that were set into warnings, or
// an *Error for a value that cannot be honoured, and applies what they
// still mean.
func (r *resolver) applyRetired(c *Config) ([]string, error) {
	var warnings []string
	for _, o := range options {
		s, set := r.got[o.flag]
		if o.retired == nil || !set {
			continue
		}
		warning, problem, fix := o.retired(s.text)
		if problem != "" {
			return nil, r.fail(o.flag, problem, fix)
		}
		warnings = append(warnings, fmt.Sprintf("%s (%s)", warning, s.src))
	}
	if c.retired.teleportDebug {
		c.Debug = true
	}
	return warnings, nil
}
