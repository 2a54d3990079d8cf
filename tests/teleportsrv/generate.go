package teleportsrv

import (
	"crypto/sha256"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	auditlogpb "github.com/gravitational/teleport/api/gen/proto/go/teleport/auditlog/v1"
	apievents "github.com/gravitational/teleport/api/types/events"
)

// Event codes from Teleport's lib/events/codes.go (not part of the api
// module).
const (
	codeUserLogin        = "T1000I"
	codeUserLoginFailure = "T1000W"
	codeUserCreate       = "T1002I"
	codeSessionStart     = "T2000I"
	codeSessionJoin      = "T2001I"
	codeResize           = "T2002I"
	codeSessionEnd       = "T2004I"
	codeSessionUpload    = "T2005I"
	codeExec             = "T3002I"
	codeExecFailure      = "T3002E"
	codeAccessRequest    = "T5000I"
	codeRoleCreated      = "T9000I"
	codeCertCreate       = "TC000I"
	codeDBQuery          = "TDB02I"

	// sessionUploadIndex is the index Teleport gives session.upload events:
	// after every event of the session.
	sessionUploadIndex = math.MaxInt32
)

var (
	users     = []string{"alice", "bob", "carol", "dave", "erin", "mallory"}
	logins    = []string{"root", "ubuntu", "ec2-user", "admin"}
	hosts     = []string{"web-1", "web-2", "db-1", "bastion", "build-7"}
	commands  = []string{"uptime", "df -h", "systemctl status nginx", "journalctl -u teleport --since -1h", "cat /etc/os-release", "ls -la /var/log"}
	roles     = []string{"access", "editor", "auditor", "prod-db-ro", "oncall"}
	queries   = []string{"SELECT * FROM orders WHERE id = $1", "UPDATE users SET last_seen = now() WHERE id = $1", "SELECT count(*) FROM events"}
	agents    = []string{"tsh/17.2.1", "Mozilla/5.0 (X11; Linux x86_64) Firefox/134.0", "tctl/17.2.1"}
	loginErrs = []string{"invalid username, password or second factor", "user mallory is locked", "missing second factor"}
)

// generator builds events from one seeded source, so a seed always gives the
// same events.
type generator struct {
	rng      *rand.Rand
	servers  map[string]string // hostname -> server ID
	open     []string          // started sessions
	finished []string          // ended sessions not yet uploaded
}

func newGenerator(seed int64) *generator {
	g := &generator{rng: rand.New(rand.NewPCG(uint64(seed), 0x7e1e907)), servers: map[string]string{}}
	for _, h := range hosts {
		g.servers[h] = g.uuid()
	}
	return g
}

// uuid is a random (version 4) UUID from the seeded source.
func (g *generator) uuid() string {
	var b [16]byte
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func (g *generator) pick(s []string) string { return s[g.rng.IntN(len(s))] }

func (g *generator) remoteAddr() string {
	return fmt.Sprintf("203.0.113.%d:%d", 1+g.rng.IntN(254), 30000+g.rng.IntN(30000))
}

func (g *generator) server(host string) apievents.ServerMetadata {
	return apievents.ServerMetadata{
		ServerNamespace: "default",
		ServerID:        g.servers[host],
		ServerHostname:  host,
		ServerAddr:      fmt.Sprintf("10.0.0.%d:3022", 10+slices.Index(hosts, host)),
		ServerVersion:   "17.2.1",
	}
}

// GenerateAuditEvents makes n audit events at start, start+step, ... of a
// realistic mix of types built from Teleport's typed events: successful and
// failed logins, session start/join/end/upload, exec (some failing), access
// requests, user and role creation, certificate issuance and database
// queries. Sessions are consistent: a session.end follows its
// session.start, a session.upload its session.end. IDs are UUIDs; the same
// seed gives the same events.
func GenerateAuditEvents(n int, start time.Time, step time.Duration, seed int64) []apievents.AuditEvent {
	g := newGenerator(seed)
	out := make([]apievents.AuditEvent, 0, n)
	for i := range n {
		md := apievents.Metadata{
			ID:          g.uuid(),
			Time:        start.Add(time.Duration(i) * step).UTC(),
			ClusterName: DefaultClusterName,
		}
		out = append(out, g.event(md))
	}
	return out
}

func (g *generator) event(md apievents.Metadata) apievents.AuditEvent {
	user := g.pick(users)
	um := apievents.UserMetadata{User: user, Login: g.pick(logins), UserKind: apievents.UserKind_USER_KIND_HUMAN}
	conn := apievents.ConnectionMetadata{RemoteAddr: g.remoteAddr()}
	switch r := g.rng.IntN(100); {
	case r < 20:
		md.Type, md.Code = "user.login", codeUserLogin
		return &apievents.UserLogin{Metadata: md, UserMetadata: um, Status: apievents.Status{Success: true},
			Method: "local", ClientMetadata: apievents.ClientMetadata{UserAgent: g.pick(agents)}, ConnectionMetadata: conn}
	case r < 30:
		md.Type, md.Code = "user.login", codeUserLoginFailure
		msg := g.pick(loginErrs)
		return &apievents.UserLogin{Metadata: md, UserMetadata: um,
			Status: apievents.Status{Success: false, Error: msg, UserMessage: msg},
			Method: "local", ClientMetadata: apievents.ClientMetadata{UserAgent: g.pick(agents)}, ConnectionMetadata: conn}
	case r < 42:
		sid := g.uuid()
		g.open = append(g.open, sid)
		host := g.pick(hosts)
		md.Type, md.Code = "session.start", codeSessionStart
		conn.LocalAddr, conn.Protocol = g.server(host).ServerAddr, "ssh"
		return &apievents.SessionStart{Metadata: md, UserMetadata: um, SessionMetadata: apievents.SessionMetadata{SessionID: sid},
			ServerMetadata: g.server(host), ConnectionMetadata: conn, TerminalSize: "120:40", SessionRecording: "node"}
	case r < 45 && len(g.open) > 0:
		md.Type, md.Code = "session.join", codeSessionJoin
		md.Index = int64(1 + g.rng.IntN(50))
		host := g.pick(hosts)
		return &apievents.SessionJoin{Metadata: md, UserMetadata: um, SessionMetadata: apievents.SessionMetadata{SessionID: g.pick(g.open)},
			ServerMetadata: g.server(host), ConnectionMetadata: conn}
	case r < 55:
		sid := g.uuid()
		if len(g.open) > 0 {
			k := g.rng.IntN(len(g.open))
			sid = g.open[k]
			g.open = append(g.open[:k], g.open[k+1:]...)
		}
		g.finished = append(g.finished, sid)
		host := g.pick(hosts)
		md.Type, md.Code = "session.end", codeSessionEnd
		md.Index = int64(2 + g.rng.IntN(500))
		return &apievents.SessionEnd{Metadata: md, UserMetadata: um, SessionMetadata: apievents.SessionMetadata{SessionID: sid},
			ConnectionMetadata: conn, ServerMetadata: g.server(host), Interactive: true, Participants: []string{user},
			StartTime: md.Time.Add(-time.Duration(1+g.rng.IntN(3600)) * time.Second), EndTime: md.Time, SessionRecording: "node"}
	case r < 63:
		sid := g.uuid()
		if len(g.finished) > 0 {
			sid, g.finished = g.finished[0], g.finished[1:]
		}
		md.Type, md.Code = "session.upload", codeSessionUpload
		md.Index = sessionUploadIndex
		return &apievents.SessionUpload{Metadata: md, SessionMetadata: apievents.SessionMetadata{SessionID: sid},
			SessionURL: "file:///var/lib/teleport/log/upload/streaming/default/" + sid + ".tar"}
	case r < 78:
		host := g.pick(hosts)
		cmd := apievents.CommandMetadata{Command: g.pick(commands), ExitCode: "0"}
		md.Type, md.Code = "exec", codeExec
		if g.rng.IntN(5) == 0 {
			md.Code, cmd.ExitCode, cmd.Error = codeExecFailure, "1", "exit status 1"
		}
		return &apievents.Exec{Metadata: md, UserMetadata: um, ConnectionMetadata: conn,
			SessionMetadata: apievents.SessionMetadata{SessionID: g.uuid()}, ServerMetadata: g.server(host), CommandMetadata: cmd}
	case r < 85:
		md.Type, md.Code = "access_request.create", codeAccessRequest
		return &apievents.AccessRequestCreate{Metadata: md, UserMetadata: apievents.UserMetadata{User: user},
			Roles: []string{g.pick(roles)}, RequestID: g.uuid(), RequestState: "PENDING", Reason: "incident INC-" + fmt.Sprint(1000+g.rng.IntN(9000))}
	case r < 89:
		md.Type, md.Code = "user.create", codeUserCreate
		name := fmt.Sprintf("%s%d", g.pick(users), g.rng.IntN(100))
		return &apievents.UserCreate{Metadata: md, UserMetadata: apievents.UserMetadata{User: "admin"},
			ResourceMetadata: apievents.ResourceMetadata{Name: name}, Roles: []string{g.pick(roles)}, Connector: "local"}
	case r < 92:
		md.Type, md.Code = "role.created", codeRoleCreated
		return &apievents.RoleCreate{Metadata: md, ResourceMetadata: apievents.ResourceMetadata{Name: g.pick(roles)},
			UserMetadata: apievents.UserMetadata{User: "admin"}, ConnectionMetadata: conn}
	case r < 96:
		md.Type, md.Code = "cert.create", codeCertCreate
		return &apievents.CertificateCreate{Metadata: md, CertificateType: "user",
			Identity:       &apievents.Identity{User: user, Roles: []string{g.pick(roles)}, Logins: []string{um.Login}, Expires: md.Time.Add(12 * time.Hour), RouteToCluster: DefaultClusterName},
			ClientMetadata: apievents.ClientMetadata{UserAgent: g.pick(agents)}}
	default:
		md.Type, md.Code = "db.session.query", codeDBQuery
		return &apievents.DatabaseSessionQuery{Metadata: md, UserMetadata: um, SessionMetadata: apievents.SessionMetadata{SessionID: g.uuid()},
			DatabaseMetadata: apievents.DatabaseMetadata{DatabaseService: "postgres-prod", DatabaseProtocol: "postgres",
				DatabaseURI: "postgres.internal:5432", DatabaseName: "shop", DatabaseUser: "app_ro"},
			DatabaseQuery: g.pick(queries), Status: apievents.Status{Success: true}}
	}
}

// GenerateRecording makes the n events of an SSH session recording starting
// at start: session.start (index 0), terminal output (print) with an
// occasional resize, and session.end (index n-1). Only print events lack an
// ID, as in Teleport; the rest get IDs derived from the session ID, so the
// same arguments give the same events.
func GenerateRecording(sessionID string, n int, start time.Time) []apievents.AuditEvent {
	if n <= 0 {
		return nil
	}
	sum := sha256.Sum256([]byte(sessionID))
	var seed int64
	for _, b := range sum[:8] {
		seed = seed<<8 | int64(b)
	}
	g := newGenerator(seed)
	user, login, host := g.pick(users), g.pick(logins), g.pick(hosts)
	um := apievents.UserMetadata{User: user, Login: login, UserKind: apievents.UserKind_USER_KIND_HUMAN}
	sm := apievents.SessionMetadata{SessionID: sessionID}
	conn := apievents.ConnectionMetadata{RemoteAddr: g.remoteAddr(), LocalAddr: g.server(host).ServerAddr, Protocol: "ssh"}
	start = start.UTC()

	out := make([]apievents.AuditEvent, 0, n)
	var offset, ms, chunk int64
	for i := range n {
		md := apievents.Metadata{Index: int64(i), ClusterName: DefaultClusterName}
		switch {
		case i == 0:
			md.Type, md.Code, md.ID, md.Time = "session.start", codeSessionStart, g.uuid(), start
			out = append(out, &apievents.SessionStart{Metadata: md, UserMetadata: um, SessionMetadata: sm,
				ServerMetadata: g.server(host), ConnectionMetadata: conn, TerminalSize: "120:40", SessionRecording: "node"})
		case i == n-1:
			md.Type, md.Code, md.ID, md.Time = "session.end", codeSessionEnd, g.uuid(), start.Add(time.Duration(ms+10)*time.Millisecond)
			out = append(out, &apievents.SessionEnd{Metadata: md, UserMetadata: um, SessionMetadata: sm, ConnectionMetadata: conn,
				ServerMetadata: g.server(host), Interactive: true, Participants: []string{user},
				StartTime: start, EndTime: md.Time, SessionRecording: "node"})
		case g.rng.IntN(20) == 0:
			ms += int64(g.rng.IntN(500))
			md.Type, md.Code, md.ID, md.Time = "resize", codeResize, g.uuid(), start.Add(time.Duration(ms)*time.Millisecond)
			out = append(out, &apievents.Resize{Metadata: md, UserMetadata: um, SessionMetadata: sm, ConnectionMetadata: conn,
				ServerMetadata: g.server(host), TerminalSize: fmt.Sprintf("%d:%d", 80+g.rng.IntN(120), 24+g.rng.IntN(40))})
		default:
			ms += int64(g.rng.IntN(300))
			data := []byte(fmt.Sprintf("%s@%s:~$ %s\r\n", login, host, g.pick(commands)))
			md.Type, md.Time = "print", start.Add(time.Duration(ms)*time.Millisecond)
			out = append(out, &apievents.SessionPrint{Metadata: md, ChunkIndex: chunk, Data: data,
				Bytes: int64(len(data)), DelayMilliseconds: ms, Offset: offset})
			chunk++
			offset += int64(len(data))
		}
	}
	return out
}

// GenerateUnstructured is n audit events (GenerateAuditEvents, from start,
// seed) and a recording of sessionEvents (GenerateRecording), as Teleport
// sends them: for the encoders' tests.
func GenerateUnstructured(n, sessionEvents int, start time.Time, seed int64) []*auditlogpb.EventUnstructured {
	evs := GenerateAuditEvents(n, start, 1700*time.Millisecond, seed)
	evs = append(evs, GenerateRecording("4f9c2b8e-0d1a-4c55-9a3e-2b7d5e6f8a90", sessionEvents, start)...)
	out := make([]*auditlogpb.EventUnstructured, len(evs))
	for i, ev := range evs {
		u, err := apievents.ToUnstructured(ev)
		if err != nil {
			panic(fmt.Sprintf("teleportsrv: generated event %d does not convert: %v", i, err))
		}
		out[i] = u
	}
	return out
}
