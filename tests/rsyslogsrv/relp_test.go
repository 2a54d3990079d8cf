package rsyslogsrv

import (
	"bufio"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFramesRoundTrip(t *testing.T) {
	for _, f := range []frame{
		{txnr: 1, cmd: "open", data: []byte(clientOffers)},
		{txnr: 999999999, cmd: "syslog", data: []byte("a\nb ] \" \x00")},
		{txnr: 5, cmd: "rsp"},
		serverclose,
	} {
		wire := appendFrame(nil, f)
		got, err := readFrame(bufio.NewReader(strings.NewReader(string(wire))), 64)
		require.NoError(t, err)
		require.Equal(t, f.String(), got.String())
	}
	require.Equal(t, "5 rsp 0\n", string(appendFrame(nil, frame{txnr: 5, cmd: "rsp"})))
	require.Equal(t, "2 rsp 6 200 OK\n", string(appendFrame(nil, frame{txnr: 2, cmd: "rsp", data: []byte("200 OK")})))
}

func TestMalformedFramesAreRefused(t *testing.T) {
	for _, wire := range []string{
		"x syslog 1 a\n",
		" 1 syslog 1 a\n",
		"1  syslog 1 a\n",
		"1 sys1og 1 a\n",
		"1 syslog\n",
		"1234567890 syslog 1 a\n",
		"1 " + strings.Repeat("c", 33) + " 1 a\n",
		"1 syslog 65 " + strings.Repeat("a", 65) + "\n",
		"1 syslog 1234567890 a\n",
		"1 syslog 2 abc\n",
		"1 syslog 0 \n",
		"1 syslog 1\n",
		"1 syslog -1 a\n",
	} {
		_, err := readFrame(bufio.NewReader(strings.NewReader(wire)), 64)
		require.ErrorIs(t, err, errFrame, "%q", wire)
	}
	_, err := readFrame(bufio.NewReader(strings.NewReader("")), 64)
	require.ErrorIs(t, err, io.EOF)
	for _, cut := range []string{"1", "1 sys", "1 syslog 3", "1 syslog 3 ab", "1 syslog 3 abc"} {
		_, err := readFrame(bufio.NewReader(strings.NewReader(cut)), 64)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF, "%q", cut)
	}
}
