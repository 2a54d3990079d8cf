package config

// The command line: the commands, their own flags and start's options as
// go-flags sees them, parsed into text by long name; typing and checking
// the text is the resolver's, for every source alike.

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/agnivade/levenshtein"
	flags "github.com/jessevdk/go-flags"
)

// didYouMean names the option closest to the unknown flag of msg (go-flags
// writes "unknown flag `name'"), when one is close enough to be a typo.
func didYouMean(msg string) string {
	_, name, ok := strings.Cut(msg, "`")
	name, _, _ = strings.Cut(name, "'")
	if !ok || name == "" {
		return ""
	}
	best, bestD := "", 0
	for _, o := range options {
		if o.retired != nil {
			continue
		}
		if d := levenshtein.ComputeDistance(name, o.flag); best == "" || d < bestD {
			best, bestD = o.flag, d
		}
	}
	if bestD > max(2, len(name)/3) {
		return ""
	}
	return " (did you mean --" + best + "?)"
}

// commandLine is the parsed command line, before any typing.
type commandLine struct {
	command   string
	flags     map[string]string // text of each option given, by long name
	help      string
	configure *configureCommand // the flags of configure
	args      []string          // arguments after the options (configure only)
	json      bool              // status --json
	sub       string            // the dead-letters subcommand
	yes       bool              // dead-letters purge --yes
	all       bool              // sessions and export --all
}

// flagSet is the go-flags view of some options: a struct built from the
// table with one field per option, a string (a bool for switches) so that
// the parser keeps the text as given and parsing stays in one place.
type flagSet struct {
	opts  []*option
	data  reflect.Value // pointer to the struct
	group *flags.Group
}

func newFlagSet(opts []*option) *flagSet {
	fields := make([]reflect.StructField, len(opts))
	for i, o := range opts {
		tag := fmt.Sprintf(`long:"%s"`, o.flag)
		if o.short != 0 {
			tag += fmt.Sprintf(` short:"%c"`, o.short)
		}
		typ := reflect.TypeFor[string]()
		if o.isSwitch() {
			typ = reflect.TypeFor[bool]()
		}
		fields[i] = reflect.StructField{Name: "F" + strconv.Itoa(i), Type: typ, Tag: reflect.StructTag(tag)}
	}
	return &flagSet{opts: opts, data: reflect.New(reflect.StructOf(fields))}
}

// collect records the options that were on the command line.
func (fs *flagSet) collect(into map[string]string) {
	for i, fo := range fs.group.Options() {
		if fo.IsSet() {
			into[fs.opts[i].flag] = fmt.Sprint(fs.data.Elem().Field(i).Interface())
		}
	}
}

// newParser builds the command line of the upstream plugin:
// teleport-event-handler [-c FILE] [-d] <start | configure | version> [options].
// go-flags lets the global options come after the command too.
func newParser() (*flags.Parser, []*flagSet, *configureCommand, *statusFlags) {
	// The help is ours (see usage): go-flags' layout wraps the long
	// environment variable names mid-word in 80 columns.
	p := flags.NewNamedParser(program, flags.HelpFlag|flags.PassDoubleDash|flags.AllowBoolValues)
	start, err := p.AddCommand("start", "", "", &struct{}{})
	if err != nil {
		panic("config: building the command line: " + err.Error())
	}
	if _, err := p.AddCommand("version", "", "", &struct{}{}); err != nil {
		panic("config: building the command line: " + err.Error())
	}
	sf := &statusFlags{}
	status, err := p.AddCommand("status", "", "", &sf.Status)
	if err != nil {
		panic("config: building the command line: " + err.Error())
	}
	withSubs := []*flags.Command{}
	for _, name := range []string{"dead-letters", "sessions", "export"} {
		var data any = &sf.Repair
		if name == "dead-letters" {
			data = &sf.Letters
		}
		cmd, err := p.AddCommand(name, "", "", data)
		if err != nil {
			panic("config: building the command line: " + err.Error())
		}
		for _, sub := range subcommands[name] {
			if _, err := cmd.AddCommand(sub, "", "", &struct{}{}); err != nil {
				panic("config: building the command line: " + err.Error())
			}
		}
		withSubs = append(withSubs, cmd)
	}
	cc := addConfigureCommand(p)

	var globalOpts, startOpts []*option
	for _, o := range options {
		if o.global {
			globalOpts = append(globalOpts, o)
		} else {
			startOpts = append(startOpts, o)
		}
	}
	cmds := append([]*flags.Command{p.Command, start, status}, withSubs...)
	sets := []*flagSet{newFlagSet(globalOpts)}
	for range cmds[1:] {
		sets = append(sets, newFlagSet(startOpts))
	}
	for i, cmd := range cmds {
		group, err := cmd.AddGroup("options", "", sets[i].data.Interface())
		if err != nil {
			panic("config: building the command line: " + err.Error())
		}
		sets[i].group = group
	}
	return p, sets, cc, sf
}

// statusFlags are the own flags of status and dead-letters, beside start's
// options.
type statusFlags struct {
	Status struct {
		JSON bool `long:"json"`
	}
	Letters struct {
		Yes bool `long:"yes"`
	}
	Repair struct {
		All bool `long:"all"`
	}
}

// subcommands are the commands with subcommands, which take start's
// options too.
var subcommands = map[string][]string{
	"dead-letters": {"list", "replay", "purge"},
	"sessions":     {"list", "retry", "drop"},
	"export":       {"list", "retry", "drop"},
}

func parseCommandLine(args []string) (*commandLine, error) {
	// What people type for these, besides -h and the version command.
	if len(args) > 0 && args[0] == "help" {
		command := ""
		if len(args) > 1 && slices.Contains([]string{"start", "configure", "status", "dead-letters", "sessions", "export"}, args[1]) {
			command = args[1]
		}
		return &commandLine{help: usage(command)}, nil
	}
	if slices.Contains(args, "--version") {
		return &commandLine{command: "version", flags: map[string]string{}}, nil
	}
	p, sets, cc, sf := newParser()
	rest, err := p.ParseArgs(args)
	if err != nil {
		var fe *flags.Error
		if errors.As(err, &fe) && fe.Type == flags.ErrHelp {
			command := ""
			if p.Active != nil {
				command = p.Active.Name
			}
			return &commandLine{help: usage(command)}, nil
		}
		msg := err.Error()
		if errors.As(err, &fe) && fe.Type == flags.ErrCommandRequired {
			msg = "no command given"
		}
		if errors.As(err, &fe) && fe.Type == flags.ErrUnknownFlag {
			msg += didYouMean(fe.Message)
		}
		return nil, &Error{Option: "command line", Problem: msg, Fix: "run " + program + " --help for the usage"}
	}
	if len(rest) > 0 && p.Active.Name != "configure" && p.Active.Name != "sessions" && p.Active.Name != "export" {
		return nil, &Error{Option: "command line", Problem: fmt.Sprintf("unexpected argument %q", rest[0]),
			Fix: "switches take a value only as --flag=false; run " + program + " --help for the usage"}
	}
	cl := &commandLine{command: p.Active.Name, flags: map[string]string{}, configure: cc, args: rest, json: sf.Status.JSON, yes: sf.Letters.Yes, all: sf.Repair.All}
	if _, ok := subcommands[p.Active.Name]; ok && p.Active.Active != nil {
		cl.sub = p.Active.Active.Name
	}
	for _, fs := range sets {
		fs.collect(cl.flags)
	}
	return cl, nil
}
