package main

import (
	"strings"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure"
)

// help is each command's synopsis (after the program's name) and what it
// does; "" is the program's. The subcommands name their command's help.
var help = map[string]struct{ synopsis, text string }{
	"": {"[-c FILE] [-d] <command> [options]",
		"Exports the Teleport audit log and session recordings to Fluentd or a syslog\n" +
			"receiver, as a drop-in replacement for Teleport's Event Handler plugin.\n\n" +
			"Commands:\n" +
			"  start      Export events to Fluentd or a syslog receiver\n" +
			"  status     Print where the daemon is and what is stuck\n" +
			"  dead-letters list|replay|purge\n" +
			"             List, send again or remove what the receiver rejected\n" +
			"  sessions list|retry|drop, export list|retry|drop\n" +
			"             Retry or drop given-up recordings and parked export chunks\n" +
			"  configure  Write certificates, the receiver's configuration, a role\n" +
			"  version    Print the version\n"},
	"start": {"[-c FILE] [-d] start [options]",
		"Exports the Teleport audit log and session recordings to Fluentd or a syslog\n" +
			"receiver, resuming where the last run stopped. Each option is taken from its\n" +
			"flag, else from its environment variable, else from the configuration file\n" +
			"(-c), else its default. Switches also take =true or =false. Secrets are\n" +
			"never flags.\n"},
	"version": {"version", "Prints the version.\n"},
	"dead-letters": {"[-c FILE] dead-letters list|replay|purge [--yes] [start's options]",
		"list prints the events Fluentd rejected for good (dead-letters.jsonl beside\n" +
			"the state). replay sends them again to their URLs with the daemon's retry\n" +
			"rules and removes each from the file once Fluentd confirmed it; those it\n" +
			"rejects again stay (exit status 3). purge removes them all, after asking\n" +
			"unless --yes. replay and purge need the daemon stopped. Takes start's\n" +
			"options; replay needs the Fluentd certificate options.\n"},
	"sessions": {"[-c FILE] sessions|export list|retry|drop [--all | NAME...] [start's options]",
		"sessions acts on the recordings the daemon gave up (not found, failing), by\n" +
			"session ID; export on the export chunks it parked, by DAY/CHUNK. list prints\n" +
			"them; retry queues a recording again (the next start streams it from its\n" +
			"index) or gives a chunk a fresh budget of failures (read first at the next\n" +
			"start); drop forgets them for good, recorded in the state. --all acts on\n" +
			"every one. They need the daemon stopped.\n"},
	"status": {"[-c FILE] status [--json] [start's options]",
		"Prints where the daemon of this --storage and --teleport-addr is and what is\n" +
			"stuck: read path, start time, position and lag, export chunks, recordings,\n" +
			"dead letters and pending locks, whether the daemon runs or not; changes\n" +
			"nothing. Takes start's options (the same configuration file and variables)\n" +
			"and uses those it needs. --json prints the same as one JSON object.\n"},
}

// helpOf names, for the commands and subcommands that share a help, whose
// it is.
var helpOf = map[string]string{
	"list": "dead-letters", "replay": "dead-letters", "purge": "dead-letters",
	"export": "sessions", "retry": "sessions", "drop": "sessions",
}

// usage is the help of the program ("") or of a command. Only the program
// and start list the global options, and start its own.
func usage(command string) string {
	if command == "configure" {
		return configure.Usage()
	}
	if of, ok := helpOf[command]; ok {
		command = of
	}
	h, ok := help[command]
	if !ok {
		command, h = "", help[""]
	}
	var b strings.Builder
	b.WriteString("Usage: " + program + " " + h.synopsis + "\n\n" + h.text)
	if command != "" && command != "start" {
		return b.String()
	}
	b.WriteString("\nGlobal options:\n")
	config.WriteGlobalHelp(&b)
	b.WriteString("  -h, --help\n      Show this help.\n")
	if command != "start" {
		b.WriteString("\nRun '" + program + " start --help' for the options of start.\n")
		return b.String()
	}
	config.WriteStartHelp(&b)
	return b.String()
}
