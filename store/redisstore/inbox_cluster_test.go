package redisstore

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/queue/queuetest"
)

// freeClusterPort returns a port p such that p and its cluster-bus port
// p+10000 are both free.
func freeClusterPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		p := freePort(t)
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no free port pair for a cluster node")
	return 0
}

// startRedisCluster starts three redis-server processes with cluster mode on,
// joins them into a cluster with redis-cli and returns their addresses.
func startRedisCluster(t *testing.T) []string {
	t.Helper()
	var addrs []string
	for range 3 {
		port := freeClusterPort(t)
		srv := &privateRedis{t: t, dir: t.TempDir(), port: port}
		srv.start("--cluster-enabled", "yes", "--cluster-config-file", srv.dir+"/nodes.conf",
			"--cluster-node-timeout", "5000")
		t.Cleanup(srv.stop)
		addrs = append(addrs, srv.addr())
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli not installed (apt-get install -y redis-tools): %v", err)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		queuetest.Eventually(t, time.Minute, "cluster_state:ok on "+a, func() bool {
			info, err := c.ClusterInfo(context.Background()).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
		_ = c.Close()
	}
	return addrs
}

// TestRedisClusterConformance runs the conformance suite against a 3-node
// Redis Cluster started by the test.
func TestRedisClusterConformance(t *testing.T) {
	addrs := startRedisCluster(t)
	newClient := func() *redis.ClusterClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	}
	admin := newClient()
	t.Cleanup(func() { _ = admin.Close() })
	queuetest.Eventually(t, time.Minute, "cluster client to see every slot", func() bool {
		return admin.Set(context.Background(), "probe:{a}", "1", time.Second).Err() == nil &&
			admin.Set(context.Background(), "probe:{b}", "1", time.Second).Err() == nil &&
			admin.Set(context.Background(), "probe:{c}", "1", time.Second).Err() == nil
	})
	h := queuetest.Harness{
		Open: func(t *testing.T, opts queue.Options, n int) []queue.Store {
			prefix := testPrefix()
			var out []queue.Store
			for range n {
				c := newClient()
				s, err := NewInbox(c, InboxOptions{Options: opts, Prefix: prefix,
					SweepInterval: 100 * time.Millisecond, PollInterval: time.Hour})
				if err != nil {
					t.Fatalf("NewInbox on the cluster: %v", err)
				}
				t.Cleanup(func() { _ = s.Close(); _ = c.Close() })
				out = append(out, s)
			}
			return out
		},
		Residue: redisHarness().Residue,
		Waiting: redisHarness().Waiting,
	}
	queuetest.Run(t, h)
	// The suite's inboxes live on more than one node, so the suite crossed
	// slots and nodes.
	owners := map[string]bool{}
	for _, inbox := range []string{"fifo", "excl", "exp", "rcpt", "dl", "idle", "leased", "cap", "agent-a", "agent-b", "big", "wake"} {
		n, err := admin.MasterForKey(context.Background(), "x:{"+inbox+"}")
		if err != nil {
			t.Fatalf("MasterForKey(%s): %v", inbox, err)
		}
		owners[n.Options().Addr] = true
	}
	if len(owners) < 2 {
		t.Fatalf("the suite's inboxes all live on %v; want several nodes", owners)
	}
}
