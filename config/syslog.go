package config

import (
	"strconv"
	"strings"
)

// facilities are the facility names of RFC 5424 (table 1), as syslog
// configurations spell them.
var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "logaudit": 13, "logalert": 14,
	"clock": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
	"local5": 21, "local6": 22, "local7": 23,
}

// checkSyslog resolves --syslog-facility, and refuses the syslog options
// when no URL is a syslog one.
func (r *resolver) checkSyslog(c *Config) error {
	f := &c.Fluentd
	for _, flag := range []string{"syslog-facility", "syslog-max-message-kb"} {
		if _, set := r.got[flag]; set && !f.UsesSyslog() && !r.replay {
			return r.fail(flag, "applies to syslog+tls:// and relp+tls:// URLs only, and neither --fluentd-url nor --fluentd-session-url is one",
				"drop it, or send to a syslog receiver with a syslog+tls:// or relp+tls:// URL")
		}
	}
	name := strings.ToLower(strings.TrimSpace(f.SyslogFacility))
	name = strings.NewReplacer(" ", "", "_", "", "-", "").Replace(name)
	if n, ok := facilities[name]; ok {
		f.Facility = n
		return nil
	}
	if n, err := strconv.Atoi(name); err == nil && n >= 0 && n <= 23 {
		f.Facility = n
		return nil
	}
	return r.fail("syslog-facility", "not a syslog facility",
		"use a name such as logaudit (13, the default), authpriv (10), auth (4) or local0 to local7, or a number from 0 to 23")
}
