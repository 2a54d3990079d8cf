package main

// The command line: the commands, their own flags, and start's options as
// go-flags sees them. The parser keeps each option's text as given: typing
// and checking it is config's, for the command line, the environment and
// the file alike.

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	flags "github.com/jessevdk/go-flags"

	"github.com/fdfwd/teleport-event-handler/config"
	"github.com/fdfwd/teleport-event-handler/internal/commands/configure"
)

const program = "teleport-event-handler"

// invocation is what the command line asks for.
type invocation struct {
	// command is start, status, dead-letters, sessions, export, configure
	// or version; "" to print help.
	command string
	help    string
	// start is start's options, resolved: for start and for the commands
	// on the state.
	start     *config.Resolved
	configure *configure.Options
	sub       string   // the subcommand of dead-letters, sessions or export
	args      []string // what sessions and export act on
	json      bool     // status --json
	yes       bool     // dead-letters purge --yes: purge without asking
	all       bool     // sessions and export --all: act on every one
	warnings  []string // about retired settings of the original plugin
}

// subcommands are the commands with subcommands, which take start's
// options too.
var subcommands = map[string][]string{
	"dead-letters": {"list", "replay", "purge"},
	"sessions":     {"list", "retry", "drop"},
	"export":       {"list", "retry", "drop"},
}

// ownFlags are the flags of the commands besides start's options.
type ownFlags struct {
	status struct {
		JSON bool `long:"json"`
	}
	letters struct {
		Yes bool `long:"yes"`
	}
	repair struct {
		All bool `long:"all"`
	}
	configure configure.Flags
}

// parse parses the command line (without the program's name) and resolves
// what the command needs from it and the environment. Bad input gives a
// *config.Error.
func parse(args []string, lookupEnv func(string) (string, bool)) (*invocation, error) {
	// What people type for these, besides -h and the version command.
	if len(args) > 0 && args[0] == "help" {
		command := ""
		if len(args) > 1 && slices.Contains([]string{"start", "configure", "status", "dead-letters", "sessions", "export"}, args[1]) {
			command = args[1]
		}
		return &invocation{help: usage(command)}, nil
	}
	if slices.Contains(args, "--version") {
		return &invocation{command: "version"}, nil
	}
	p, sets, own := newParser()
	rest, err := p.ParseArgs(args)
	if err != nil {
		return commandLineError(p, err)
	}
	cmd := p.Active
	if len(rest) > 0 && cmd.Name != "configure" && cmd.Name != "sessions" && cmd.Name != "export" {
		return nil, &config.Error{Option: "command line", Problem: fmt.Sprintf("unexpected argument %q", rest[0]),
			Fix: "switches take a value only as --flag=false; run " + program + " --help for the usage"}
	}
	inv := &invocation{command: cmd.Name, args: rest, json: own.status.JSON, yes: own.letters.Yes, all: own.repair.All}
	if _, ok := subcommands[cmd.Name]; ok && cmd.Active != nil {
		inv.sub = cmd.Active.Name
	}
	given := map[string]string{}
	for _, fs := range sets {
		fs.collect(given)
	}
	return inv, inv.resolve(cmd, own, given, lookupEnv)
}

// resolve resolves what the command needs.
func (inv *invocation) resolve(cmd *flags.Command, own *ownFlags, given map[string]string, lookupEnv func(string) (string, bool)) error {
	var err error
	switch _, onState := subcommands[inv.command]; {
	case inv.command == "configure":
		isSet := func(flag string) bool {
			o := cmd.FindOptionByLongName(flag)
			return o != nil && o.IsSet()
		}
		inv.configure, err = configure.Resolve(own.configure, isSet, inv.args, lookupEnv)
		if err == nil {
			inv.warnings = inv.configure.Warnings
		}
		return err
	case inv.command == "start":
		inv.start, err = config.Resolve(given, lookupEnv)
	case onState || inv.command == "status":
		// Replay sends to Fluentd as start does.
		inv.start, err = config.ResolveForState(given, lookupEnv, inv.sub == "replay")
	default: // version
		return nil
	}
	if err == nil {
		inv.warnings = inv.start.Warnings
	}
	return err
}

// commandLineError turns what go-flags refused into help or an error that
// says how to get the usage.
func commandLineError(p *flags.Parser, err error) (*invocation, error) {
	var fe *flags.Error
	if errors.As(err, &fe) && fe.Type == flags.ErrHelp {
		command := ""
		if p.Active != nil {
			command = p.Active.Name
		}
		return &invocation{help: usage(command)}, nil
	}
	msg := err.Error()
	if errors.As(err, &fe) && fe.Type == flags.ErrCommandRequired {
		msg = "no command given"
	}
	if errors.As(err, &fe) && fe.Type == flags.ErrUnknownFlag {
		msg += didYouMean(fe.Message)
	}
	return nil, &config.Error{Option: "command line", Problem: msg, Fix: "run " + program + " --help for the usage"}
}

// didYouMean names the option closest to the unknown flag of msg (go-flags
// writes "unknown flag `name'"), when one is close enough to be a typo.
func didYouMean(msg string) string {
	_, name, _ := strings.Cut(msg, "`")
	name, _, _ = strings.Cut(name, "'")
	if best := config.Closest(name); best != "" {
		return " (did you mean --" + best + "?)"
	}
	return ""
}

// newParser builds the command line of the upstream plugin:
// teleport-event-handler [-c FILE] [-d] <start | configure | version> [options],
// and this daemon's commands. go-flags lets the global options come after
// the command too.
func newParser() (*flags.Parser, []*flagSet, *ownFlags) {
	// The help is ours (see usage): go-flags' layout wraps the long
	// environment variable names mid-word in 80 columns.
	p := flags.NewNamedParser(program, flags.HelpFlag|flags.PassDoubleDash|flags.AllowBoolValues)
	own := &ownFlags{}
	add := func(parent *flags.Command, name string, data any) *flags.Command {
		cmd, err := parent.AddCommand(name, "", "", data)
		if err != nil {
			panic("building the command line: " + err.Error())
		}
		return cmd
	}
	startLike := []*flags.Command{add(p.Command, "start", &struct{}{}), add(p.Command, "status", &own.status)}
	add(p.Command, "version", &struct{}{})
	add(p.Command, "configure", &own.configure)
	for _, name := range []string{"dead-letters", "sessions", "export"} {
		var data any = &own.repair
		if name == "dead-letters" {
			data = &own.letters
		}
		cmd := add(p.Command, name, data)
		for _, sub := range subcommands[name] {
			add(cmd, sub, &struct{}{})
		}
		startLike = append(startLike, cmd)
	}

	var global, start []config.Flag
	for _, f := range config.Flags() {
		if f.Global {
			global = append(global, f)
		} else {
			start = append(start, f)
		}
	}
	sets := []*flagSet{newFlagSet(p.Command, global)}
	for _, cmd := range startLike {
		sets = append(sets, newFlagSet(cmd, start))
	}
	return p, sets, own
}

// flagSet is the go-flags view of some options: a struct built from
// config's flags with one field per option, a string (a bool for switches)
// so that the parser keeps the text as given.
type flagSet struct {
	flags []config.Flag
	data  reflect.Value // pointer to the struct
	group *flags.Group
}

func newFlagSet(cmd *flags.Command, fs []config.Flag) *flagSet {
	fields := make([]reflect.StructField, len(fs))
	for i, f := range fs {
		tag := fmt.Sprintf(`long:"%s"`, f.Long)
		if f.Short != 0 {
			tag += fmt.Sprintf(` short:"%c"`, f.Short)
		}
		typ := reflect.TypeFor[string]()
		if f.Switch {
			typ = reflect.TypeFor[bool]()
		}
		fields[i] = reflect.StructField{Name: "F" + strconv.Itoa(i), Type: typ, Tag: reflect.StructTag(tag)}
	}
	set := &flagSet{flags: fs, data: reflect.New(reflect.StructOf(fields))}
	group, err := cmd.AddGroup("options", "", set.data.Interface())
	if err != nil {
		panic("building the command line: " + err.Error())
	}
	set.group = group
	return set
}

// collect records the options that were on the command line.
func (fs *flagSet) collect(into map[string]string) {
	for i, fo := range fs.group.Options() {
		if fo.IsSet() {
			into[fs.flags[i].Long] = fmt.Sprint(fs.data.Elem().Field(i).Interface())
		}
	}
}
