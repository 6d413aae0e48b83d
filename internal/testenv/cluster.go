package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/winchhq/winch/broker"
)

// clusterChildEnv names the configuration file of a NATS server that this
// process, a re-executed test binary, is to run (ServerChildMain).
const clusterChildEnv = "WINCH_TEST_NATS_SERVER_CONF"

// ServerChildEnv is the environment entry that makes a re-executed test
// binary run the NATS server of conf (ServerChildMain), for tests that
// start such a process themselves.
func ServerChildEnv(conf string) string { return clusterChildEnv + "=" + conf }

// ServerChildMain runs a NATS server from a configuration file, and then
// exits, if this process was started by a Cluster; otherwise it returns.
// Call it first in TestMain. Servers run as processes of their own so that
// a test can kill one as a crash would (SIGKILL: no shutdown, no flush).
func ServerChildMain() {
	conf := os.Getenv(clusterChildEnv)
	if conf == "" {
		return
	}
	srv, err := broker.NewServer(broker.ServerConfig{ConfigFile: conf})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = srv.Start(ctx)
		cancel()
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.Stop()
	os.Exit(0)
}

// Cluster is a NATS cluster of n servers with JetStream, each a process of
// its own on loopback ports, clustered by routes: what winch runs on in
// production, made small.
type Cluster struct {
	tb      testing.TB
	servers []*clusterServer
}

type clusterServer struct {
	name, conf, url string
	cmd             *exec.Cmd
}

// StartCluster starts n clustered servers and waits until JetStream has a
// meta leader; they are killed when the test ends.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	dir := tb.TempDir()
	ports := make([]int, 2*n)
	for i := range ports {
		ports[i] = FreePort(tb)
	}
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	c := &Cluster{tb: tb}
	for i := range n {
		s := &clusterServer{name: "n" + strconv.Itoa(i+1), url: fmt.Sprintf("nats://127.0.0.1:%d", ports[i])}
		s.conf = filepath.Join(dir, s.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: winch-test
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, s.name, ports[i], filepath.Join(dir, s.name), ports[n+i], strings.Join(routes, ", "))
		if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
			tb.Fatal(err)
		}
		c.servers = append(c.servers, s)
	}
	tb.Cleanup(func() {
		for i := range c.servers {
			c.Kill(i)
		}
	})
	for i := range c.servers {
		c.Start(i)
	}
	c.WaitReady()
	return c
}

// FreePort is a TCP port on loopback that nothing listened on a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URLs is every server's client URL, comma-separated, as WINCH_NATS_URL
// takes them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.servers))
	for i, s := range c.servers {
		urls[i] = s.url
	}
	return strings.Join(urls, ",")
}

// Name is server i's name, as JetStream reports leaders and replicas.
func (c *Cluster) Name(i int) string { return c.servers[i].name }

// Index is the index of the server named name, or -1.
func (c *Cluster) Index(name string) int {
	for i, s := range c.servers {
		if s.name == name {
			return i
		}
	}
	return -1
}

// Start starts server i (again, on the same ports and files).
func (c *Cluster) Start(i int) {
	c.tb.Helper()
	s := c.servers[i]
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), ServerChildEnv(s.conf))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.tb.Fatal(err)
	}
	s.cmd = cmd
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		c.Kill(i)
		c.tb.Fatalf("nats server %s did not start: %q %v", s.name, line, err)
	}
}

// Kill ends server i as a crash would: SIGKILL, no shutdown.
func (c *Cluster) Kill(i int) {
	s := c.servers[i]
	if s.cmd != nil && s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// WaitReady waits until JetStream answers through the cluster: it has a
// meta leader.
func (c *Cluster) WaitReady() {
	c.tb.Helper()
	nc, err := nats.Connect(c.URLs())
	if err != nil {
		c.tb.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.tb.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("nats cluster: no JetStream after 30s: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Leader is the index of the server that leads stream, as js sees it.
func (c *Cluster) Leader(ctx context.Context, js jetstream.JetStream, stream string) (int, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return -1, err
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return -1, errors.New("stream " + stream + " has no leader")
	}
	return c.Index(info.Cluster.Leader), nil
}

// WaitCurrent waits until every replica of stream is current (caught up
// with its leader), and says what it last saw if they do not get there.
func (c *Cluster) WaitCurrent(ctx context.Context, js jetstream.JetStream, stream string) error {
	var last string
	for {
		s, err := js.Stream(ctx, stream)
		if err == nil {
			info := s.CachedInfo()
			ok := info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == len(c.servers)-1
			last = fmt.Sprintf("leader %q", info.Cluster.Leader)
			for _, r := range info.Cluster.Replicas {
				last += fmt.Sprintf(", %s current=%v offline=%v lag=%d", r.Name, r.Current, r.Offline, r.Lag)
				ok = ok && r.Current && !r.Offline && r.Lag == 0
			}
			if ok {
				return nil
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream %s: replicas not current: %s", stream, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// CPUTime is the user and system CPU that the servers running now have
// used (from /proc), for benchmarks that count the whole system's CPU.
func (c *Cluster) CPUTime() time.Duration {
	var total time.Duration
	for _, s := range c.servers {
		if s.cmd == nil || s.cmd.ProcessState != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// The fields after the command name (which may hold spaces, so
		// cut at its closing parenthesis): utime and stime are the 12th
		// and 13th, in clock ticks of 1/100 s on Linux.
		_, rest, _ := strings.Cut(string(stat), ") ")
		fields := strings.Fields(rest)
		if len(fields) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		total += time.Duration(utime+stime) * 10 * time.Millisecond
	}
	return total
}
