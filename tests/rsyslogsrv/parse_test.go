package rsyslogsrv

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseReadsEveryPart(t *testing.T) {
	m := mustParse(t, `<165>1 2003-10-11T22:14:15.003-07:00 mymachine.example.com evntslog - ID47 `+
		`[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473.1.2 class="high" esc="a\\b\"c\]d\xe"] `+"\ufeff"+`An application event`)
	require.Equal(t, Message{
		PRI: 165, Facility: 20, Severity: 5, Version: 1,
		Timestamp: "2003-10-11T22:14:15.003-07:00",
		Hostname:  "mymachine.example.com", AppName: "evntslog", ProcID: "-", MsgID: "ID47",
		SD: map[string]map[string]string{
			"exampleSDID@32473":         {"iut": "3", "eventSource": "Application", "eventID": "1011"},
			"examplePriority@32473.1.2": {"class": "high", "esc": `a\b"c]d\xe`},
		},
		SDRaw: `[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473.1.2 class="high" esc="a\\b\"c\]d\xe"]`,
		BOM:   true,
		Msg:   "An application event",
	}, m)

	// MSG may be absent, or empty after its SP; an element may have no
	// parameter; the IANA SD-IDs need no "@".
	require.Equal(t, "", mustParse(t, "<0>1 - - - - - -").Msg)
	require.Equal(t, "", mustParse(t, "<0>1 - - - - - - ").Msg)
	require.Equal(t, map[string]map[string]string{"meta": {}, "timeQuality": {"isSynced": "0"}},
		mustParse(t, `<0>1 - - - - - [meta][timeQuality isSynced="0"] x`).SD)
	require.Equal(t, "  two spaces, ] and \"", mustParse(t, `<0>1 - - - - - -   two spaces, ] and "`).Msg)
	require.Equal(t, "2024-02-29T23:59:59.999999+14:00", mustParse(t, "<0>1 2024-02-29T23:59:59.999999+14:00 - - - - -").Timestamp)
}

func TestParseRefusesWhatRFC5424Does(t *testing.T) {
	const tail = " h a p m - msg"
	for _, line := range []string{
		"",
		"110>1 - - - - - -",
		"<>1 - - - - - -",
		"<192>1 - - - - - -",
		"<01>1 - - - - - -",
		"<1a>1 - - - - - -",
		"<1>2 - - - - - -",
		"<1>01 - - - - - -",
		"<1>1  - - - - -",
		"<1>1 -",
		"<1>1 - - - - -",
		"<1>1 2024-05-06t07:08:09Z" + tail,
		"<1>1 2024-05-06T07:08:09z" + tail,
		"<1>1 2024-05-06T07:08:09" + tail,
		"<1>1 2024-05-06T07:08:09.1234567Z" + tail,
		"<1>1 2024-05-06T07:08:09.Z" + tail,
		"<1>1 2024-13-06T07:08:09Z" + tail,
		"<1>1 2023-02-29T07:08:09Z" + tail,
		"<1>1 2024-05-06T24:08:09Z" + tail,
		"<1>1 2024-05-06T07:08:60Z" + tail,
		"<1>1 2024-05-06T07:08:09+0200" + tail,
		"<1>1 - hôst a p m - msg",
		"<1>1 - h " + strings.Repeat("a", 49) + " p m - msg",
		"<1>1 - h a " + strings.Repeat("p", 129) + " m - msg",
		"<1>1 - h a p " + strings.Repeat("m", 33) + " - msg",
		"<1>1 - " + strings.Repeat("h", 256) + " a p m - msg",
		"<1>1 - h a p m x msg",
		"<1>1 - h a p m -msg",
		`<1>1 - h a p m [teleport a="b"] msg`,
		`<1>1 - h a p m [teleport@ a="b"] msg`,
		`<1>1 - h a p m [@64111 a="b"] msg`,
		`<1>1 - h a p m [teleport@64111@1 a="b"] msg`,
		`<1>1 - h a p m [teleport@abc a="b"] msg`,
		`<1>1 - h a p m [teleport@64111 a="b]"] msg`,
		`<1>1 - h a p m [teleport@64111 a="b] msg`,
		`<1>1 - h a p m [teleport@64111 a=b] msg`,
		`<1>1 - h a p m [teleport@64111 a="b"  c="d"] msg`,
		`<1>1 - h a p m [teleport@64111 a="b"]msg`,
		`<1>1 - h a p m [teleport@64111 a="b" a="c"] msg`,
		`<1>1 - h a p m [teleport@64111 a="b"][teleport@64111 c="d"] msg`,
		`<1>1 - h a p m [teleport@64111 ` + strings.Repeat("n", 33) + `="b"] msg`,
		"<1>1 - h a p m [teleport@64111 a=\"\xff\"] msg",
		"<1>1 - h a p m [teleport@64111 a=\"b\"",
		"<1>1 - h a p m [teleport@64111 a=\"b",
		"<1>1 - h a p m - \ufeffnot \xffUTF-8",
	} {
		_, err := Parse(line)
		require.ErrorIs(t, err, ErrSyntax, "%q", line)
	}
}
