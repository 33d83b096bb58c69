package testredis

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// server is a redis-server process a test started in its own directory; it
// is killed when the test ends.
type server struct {
	port int
	cmd  *exec.Cmd
}

func (s *server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// freePort returns a free TCP port on 127.0.0.1; with busPair it also checks
// port+10000 (a Cluster node's bus port).
func freePort(t testing.TB, busPair bool) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !busPair {
			return p
		}
		if p+10000 > 65535 {
			continue
		}
		if b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000)); err == nil {
			b.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// startServer runs redis-server with args (after the port and directory
// options) and waits until it answers a PING.
func startServer(t testing.TB, port int, args ...string) *server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not installed (apt-get install -y redis-server): %v", err)
	}
	dir := t.TempDir()
	s := &server{port: port}
	full := append(args, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no", "--logfile", "")
	s.cmd = exec.Command("redis-server", full...)
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	})
	c := redis.NewClient(&redis.Options{Addr: s.addr()})
	defer c.Close()
	waitFor(t, 30*time.Second, "redis-server on "+s.addr()+" to answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ping(ctx).Err() == nil
	})
	return s
}

// waitFor polls cond every 10 ms until it holds or timeout passes (the
// servers offer no readiness signal but their answers).
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// StartCluster starts a private 3-node Redis Cluster (three masters, no
// replicas), joined with redis-cli, and returns the node addresses once
// every node reports cluster_state:ok and a cluster client can write to
// every slot range. The processes are killed when t ends.
func StartCluster(t testing.TB) []string {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli not installed (apt-get install -y redis-tools): %v", err)
	}
	var addrs []string
	for range 3 {
		port := freePort(t, true)
		dir := t.TempDir()
		s := startServer(t, port, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "5000")
		addrs = append(addrs, s.addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		waitFor(t, time.Minute, "cluster_state:ok on "+a, func() bool {
			info, err := c.ClusterInfo(context.Background()).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
		_ = c.Close()
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()
	waitFor(t, time.Minute, "a cluster client to reach every slot", func() bool {
		for _, tag := range []string{"a", "b", "c"} {
			if cc.Set(context.Background(), "testredis:probe:{"+tag+"}", "1", time.Second).Err() != nil {
				return false
			}
		}
		return true
	})
	return addrs
}

// StartSentinel starts a private master and one Sentinel monitoring it
// under masterName, and returns the Sentinel's address once it names the
// master. The processes are killed when t ends.
func StartSentinel(t testing.TB, masterName string) (sentinelAddr string) {
	t.Helper()
	master := startServer(t, freePort(t, false))
	port := freePort(t, false)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	body := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 5000\n", masterName, master.port, masterName)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, port, conf, "--sentinel")
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.addr()})
	defer sc.Close()
	waitFor(t, 30*time.Second, "sentinel to name master "+masterName, func() bool {
		a, err := sc.GetMasterAddrByName(context.Background(), masterName).Result()
		return err == nil && len(a) == 2 && a[1] == strconv.Itoa(master.port)
	})
	return s.addr()
}
