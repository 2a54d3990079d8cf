package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Resolved is start's options, resolved and checked.
type Resolved struct {
	Config *Config
	// File is the TOML file read (from -c or FDFWD_CONFIG), "" if none.
	File string
	// Warnings are about settings of the original plugin that are retired
	// but accepted, one line each, for the log (or stderr).
	Warnings []string
}

// Resolve resolves and validates start's options. flags holds the text of
// each option given on the command line, by long name (as Flags names
// them); lookupEnv is normally os.LookupEnv. Below them come the
// configuration file and the defaults. Bad input gives an *Error. Resolve
// only reads files; it creates nothing.
func Resolve(flags map[string]string, lookupEnv func(string) (string, bool)) (*Resolved, error) {
	r := &resolver{flags: flags, lookupEnv: lookupEnv, got: map[string]setting{}}
	cfg, err := r.resolve()
	if err != nil {
		return nil, err
	}
	if err := r.validate(cfg); err != nil {
		return nil, err
	}
	return r.resolved(cfg), nil
}

// ResolveForState resolves start's options for the commands that work on
// the state (status, dead-letters, sessions and export). They need where it
// is (--storage and --teleport-addr) and, to replay dead letters, what
// sending to Fluentd needs; the rest may be missing.
func ResolveForState(flags map[string]string, lookupEnv func(string) (string, bool), replay bool) (*Resolved, error) {
	r := &resolver{flags: flags, lookupEnv: lookupEnv, got: map[string]setting{}}
	cfg, err := r.resolve()
	if err != nil {
		return nil, err
	}
	if cfg.Storage == "" {
		o := optionByFlag("storage")
		return nil, &Error{Option: "--storage", Problem: "required option not set", Fix: "set " + o.ways()}
	}
	if err := r.checkTeleportAddr(cfg); err != nil {
		return nil, err
	}
	if replay {
		if err := r.checkReplay(cfg); err != nil {
			return nil, err
		}
	}
	return r.resolved(cfg), nil
}

func (r *resolver) resolved(cfg *Config) *Resolved {
	res := &Resolved{Config: cfg, Warnings: r.warnings}
	if r.file != nil {
		res.File = r.file.path
	}
	return res
}

// checkReplay wants what sending to Fluentd needs: the client certificate
// and the CA, and the forward options.
func (r *resolver) checkReplay(c *Config) error {
	var missing, ways []string
	for _, flag := range []string{"fluentd-ca", "fluentd-cert", "fluentd-key"} {
		if *optionByFlag(flag).field(c).(*string) == "" {
			missing = append(missing, "--"+flag)
			ways = append(ways, optionByFlag(flag).ways())
		}
	}
	if len(missing) > 0 {
		return &Error{Option: strings.Join(missing, ", "), Problem: "required to replay dead letters: Fluentd is reached over mTLS",
			Fix: "set " + strings.Join(ways, "; ")}
	}
	r.replay = true // the letters carry their URLs, which may be forward://
	return r.checkFluentd(c)
}

// setting is the text an option was given and where it came from.
type setting struct {
	text string
	src  string // as in Error.Source
	key  string // the TOML key, when from the file
	name string // the flag given, when it is not the option's own name (its lead)
}

// resolver applies the precedence flag > environment > file > default and
// remembers where each value came from, so that validation can say so.
type resolver struct {
	flags     map[string]string
	lookupEnv func(string) (string, bool)
	file      *file              // nil without a configuration file
	got       map[string]setting // options that were set, by flag
	replay    bool               // dead-letters replay: forward options apply whatever the URLs
	warnings  []string           // about retired options that were set
}

// lookup returns the text that sets o, if anything does.
func (r *resolver) lookup(o *option) (setting, bool, error) {
	text, byFlag := r.flags[o.flag]
	if lead, ok := r.flags[o.lead]; ok && o.lead != "" {
		if byFlag {
			return setting{}, false, &Error{Option: "--" + o.lead, Value: lead, Source: "flag",
				Problem: "sets the same option as --" + o.flag, Fix: "give only one of them (--" + o.flag + " is its older name)"}
		}
		return setting{text: lead, src: "flag", name: o.lead}, true, nil
	}
	if byFlag {
		return setting{text: text, src: "flag"}, true, nil
	}
	for _, name := range o.env {
		if text, ok := r.lookupEnv(name); ok {
			return setting{text: text, src: "env " + name}, true, nil
		}
	}
	if r.file != nil {
		return r.file.lookup(o)
	}
	return setting{}, false, nil
}

// resolve reads the configuration file, if any, and returns the defaults
// overridden by whatever sets each option.
func (r *resolver) resolve() (*Config, error) {
	if s, ok, _ := r.lookup(optionByFlag("config")); ok && s.text != "" {
		f, err := loadFile(s)
		if err != nil {
			return nil, err
		}
		r.file = f
	}
	cfg := Default()
	for _, o := range options {
		if o.field == nil {
			continue
		}
		s, ok, err := r.lookup(o)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if o.secret && s.src == "flag" {
			return nil, secretOnCommandLine(o)
		}
		r.got[o.flag] = s
		if problem, fix := o.set(&cfg, s.text); problem != "" {
			return nil, r.fail(o.flag, problem, fix)
		}
	}
	if err := r.resolveStorage(&cfg); err != nil {
		return nil, err
	}
	r.derivedDefaults(&cfg)
	warnings, err := r.applyRetired(&cfg)
	if err != nil {
		return nil, err
	}
	r.warnings = warnings
	return &cfg, nil
}

// derivedDefaults sets the defaults that follow from other options, once
// every option is resolved: the original's "0 connections means 2 x
// --concurrency", a forward:// or syslog URL's larger batch, and search pages that
// grow unless --batch is set.
func (r *resolver) derivedDefaults(c *Config) {
	if c.Fluentd.MaxConnections == 0 {
		c.Fluentd.MaxConnections = 2 * c.Concurrency
	}
	if _, set := r.got["batch"]; set {
		c.GrowBatch = false // the user's page size, kept
	}
	if _, set := r.got["fluentd-batch"]; !set && (c.Fluentd.UsesForward() || c.Fluentd.UsesSyslog()) {
		c.Fluentd.Batch = DefaultForwardBatch
	}
}

// StateDirectoryEnv names the service's state directory: systemd sets it
// for StateDirectory=, and the image sets it too. It is the default of
// --storage, below every way of setting it, so that the deploy files name
// no storage and the operator's file (the original plugin's storage =
// "./storage" included) always wins.
const StateDirectoryEnv = "STATE_DIRECTORY"

// resolveStorage applies the default of --storage and makes it absolute.
// A relative storage is taken from the working directory, as the original
// plugin takes it; the absolute path is what the logs and errors show, so
// that an operator sees where the state is looked for.
func (r *resolver) resolveStorage(c *Config) error {
	if _, set := r.got["storage"]; !set {
		// systemd lists several directories with colons when the unit
		// names several; the first is the service's own.
		dir, _, _ := strings.Cut(envText(r.lookupEnv, StateDirectoryEnv), ":")
		if dir == "" {
			return nil
		}
		c.Storage = dir
		r.got["storage"] = setting{text: dir, src: "env " + StateDirectoryEnv + " (the default)"}
	}
	if c.Storage == "" || filepath.IsAbs(c.Storage) {
		return nil
	}
	abs, err := filepath.Abs(c.Storage)
	if err != nil {
		return r.fail("storage", "relative, and the working directory is unknown: "+err.Error(), "give an absolute path")
	}
	c.Storage = abs
	return nil
}

func envText(lookupEnv func(string) (string, bool), name string) string {
	v, _ := lookupEnv(name)
	return strings.TrimSpace(v)
}

// secretOnCommandLine refuses a secret given as a flag: every user of the
// host sees a process's arguments.
func secretOnCommandLine(o *option) *Error {
	fix := fmt.Sprintf("set %s or %s in the configuration file", o.env[0], o.keys[0])
	if optionByFlag(o.flag+"-file") != nil {
		fix = fmt.Sprintf("put it in a file only the daemon can read and give --%s-file, or %s", o.flag, fix)
	}
	return &Error{Option: "--" + o.flag, Value: "(not shown)", Source: "flag",
		Problem: "a secret on the command line is shown to every user by ps and kept in shell history", Fix: fix}
}

// fail returns an *Error about the value the option was set to.
func (r *resolver) fail(flag, problem, fix string) *Error {
	s := r.got[flag]
	if o := optionByFlag(flag); o != nil && o.secret && s.text != "" {
		s.text = "(not shown)"
	}
	name := flag
	if s.name != "" {
		name = s.name
	}
	return &Error{Option: "--" + name, Value: s.text, Source: s.src, key: s.key, Problem: problem, Fix: fix}
}
