package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/proctest"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/internal/wiretest"
)

// The fault matrix: clusterkit-node processes on three etcd members that run as processes, each
// node reaching etcd through a faultLink of its own, so that one node's path can be cut or
// slowed. Each fault ends with one line of figures in the test log ("figures: ..."): the time
// to recover, the maps published meanwhile (the stored map's epoch before and after), and the
// warning and error lines the nodes concerned logged meanwhile. The claim checker samples every
// node's GET /cluster/claims throughout: no two nodes may ever claim one partition at one
// primary epoch.

const (
	// faultTTL is the nodes' LEASE_TTL. A node renews every third of it and believes its lease
	// held until the send time of its last renewal plus nine tenths of it.
	faultTTL = 3 * time.Second
	// shortBlackhole is under 2/3 of the TTL: the last renewal before the cut was sent at most
	// a third of the TTL before it, so the node's own deadline (0.9 TTL after that send) is
	// still 0.4 s away when the path heals, and etcd's (a TTL after its arrival) 0.8 s away.
	shortBlackhole = 1200 * time.Millisecond
	// addedLatency is added to every byte of one node's etcd path, in each direction.
	addedLatency = 200 * time.Millisecond
	// noSpaceQuota is the etcd quota of the NOSPACE test (--quota-backend-bytes).
	noSpaceQuota = 16 << 20
)

// The nodes' log messages the tests look for.
const (
	msgLeaseLost     = "lease lost, registering again"
	msgNoSpaceAlarm  = "etcd raised its NOSPACE alarm"
	msgSpaceExceeded = "database space exceeded"
)

// Three nodes on three etcd members go through, in turn: the death of an etcd follower and of
// the etcd leader, a short and a long blackhole of one node's path to etcd, 200ms of latency on
// it, and a compaction of etcd's history past a map that one node missed.
func TestFaultMatrix(t *testing.T) {
	began := time.Now()
	f := startFaultMatrix(t)
	t.Logf("built the node binary (race: %v), started 3 etcd members and 3 nodes (LEASE_TTL %v) in %v",
		proctest.RaceEnabled, faultTTL, time.Since(began).Round(time.Millisecond))
	defer f.reportClaims(t)

	for _, s := range []struct {
		name string
		run  func(*testing.T, *faultMatrix)
	}{
		{"etcd member killed", testMemberKills},
		{"short blackhole", testShortBlackhole},
		{"long blackhole", testLongBlackhole},
		{"latency", testLatency},
		{"compaction", testCompactionMidStream},
	} {
		if !t.Run(s.name, func(t *testing.T) { s.run(t, f) }) {
			return
		}
	}
}

// testMemberKills kills an etcd follower, then the etcd leader. Every node renews its lease
// through the members left, and no lease is lost over a follower (over the leader, the figures
// say whether one was, and how long nodes answered fenced while etcd elected a new leader);
// after each kill a change of membership is still placed (a join, then a node's crash), and the
// nodes agree on one map.
func testMemberKills(t *testing.T, f *faultMatrix) {
	f.c.waitStable(t, 30*time.Second)
	leader := f.etcd.leader(t)
	var follower *etcdMember
	for _, m := range f.etcd.members {
		if m != leader {
			follower = m
			break
		}
	}
	nodes := f.c.running()

	m := f.mark(t)
	health := startHealthSampler(nodes)
	killed := time.Now()
	follower.kill(t)
	renewed := f.waitRenewedSince(t, killed, nodes)
	if e := f.storedEpoch(t); e != m.epoch {
		t.Errorf("a map was published when an etcd follower died: epoch %d, before %d", e, m.epoch)
	}
	joined := time.Now()
	node4 := f.launch(t, "node-4")
	f.waitReady(t, node4)
	f.c.waitStable(t, 30*time.Second)
	placed := time.Since(joined)
	health.stop()
	f.report(t, "etcd follower "+follower.name+" killed", m, renewed,
		fmt.Sprintf("every node renewed its lease %v after the kill; node-4's join placed %v after it started; %s",
			renewed.Round(time.Millisecond), placed.Round(time.Millisecond), health.summary(killed)), nodes...)
	for _, n := range nodes {
		if lost := countLines(n, m, msgLeaseLost); lost > 0 {
			t.Errorf("%s lost its lease %d times while an etcd follower was down", n.id, lost)
		}
	}
	follower.restart(t)

	leader = f.etcd.leader(t)
	nodes = f.c.running()
	m = f.mark(t)
	health = startHealthSampler(nodes)
	killed = time.Now()
	leader.kill(t)
	next := f.etcd.leader(t)
	elected := time.Since(killed)
	renewed = f.waitRenewedSince(t, killed, nodes)
	byKill := f.storedEpoch(t) - m.epoch
	crashed := time.Now()
	node4.Kill(t)
	waitFor(t, 15*time.Second, "node-4's record gone from etcd", func() error {
		if r := f.record(t, node4.id); r != (nodeRecord{}) {
			return fmt.Errorf("node-4's record is still there, under lease %x", r.lease)
		}
		return nil
	})
	expired := time.Since(crashed)
	f.c.waitStable(t, 30*time.Second)
	placed = time.Since(crashed)
	health.stop()
	lost := 0
	for _, n := range nodes {
		lost += countLines(n, m, msgLeaseLost)
	}
	// A lost lease is a change of membership; without one, the election changes no map.
	if lost == 0 && byKill > 0 {
		t.Errorf("%d maps were published when the etcd leader died, though no node lost its lease", byKill)
	}
	f.report(t, "etcd leader "+leader.name+" killed", m, renewed,
		fmt.Sprintf("%s led etcd %v after the kill; every node renewed its lease %v after it; leases lost: %d; maps before node-4's crash: %d; its lease expired %v after its SIGKILL, the crash placed and settled %v after it; %s",
			next.name, elected.Round(time.Millisecond), renewed.Round(time.Millisecond), lost, byKill, expired.Round(time.Millisecond),
			placed.Round(time.Millisecond), health.summary(killed)), nodes...)
	leader.restart(t)
	f.c.waitStable(t, 30*time.Second)
}

// testShortBlackhole cuts the leader's path to etcd for less than 2/3 of the TTL: nothing
// changes. No map is published, the node keeps its lease and its record and still leads,
// unfenced, once the path is back. (Whether it answered fenced meanwhile is in the figures: it
// should not, its deadline being 0.4 s past the heal at the least, unless the machine starves
// it of its renewals.)
func testShortBlackhole(t *testing.T, f *faultMatrix) {
	view := f.c.waitStable(t, 30*time.Second)
	victim := f.c.byID(view.Cluster.Leader)
	record := f.record(t, victim.id)
	m := f.mark(t)
	health := startHealthSampler([]*nodeProcess{victim})
	cut := time.Now()
	f.links[victim.id].blackhole()
	time.Sleep(shortBlackhole) // the fault itself
	f.links[victim.id].heal()
	healed := time.Now()
	// The renewal sent during the cut, held until the heal, counts: it was sent after the cut.
	renewed := cut.Add(f.waitRenewedSince(t, cut, []*nodeProcess{victim})).Sub(healed)
	// A third of the TTL, one renewal period, for anything the cut set off to show.
	time.Sleep(faultTTL / 3)
	health.stop()
	f.report(t, fmt.Sprintf("%v blackhole of the leader %s", shortBlackhole, victim.id), m, renewed,
		fmt.Sprintf("lease renewed %v after the heal; %s", renewed.Round(time.Millisecond), health.summary(cut)), victim)
	if e := f.storedEpoch(t); e != m.epoch {
		t.Errorf("a map was published during or after a %v blackhole of %s: epoch %d, before %d", shortBlackhole, victim.id, e, m.epoch)
	}
	if after := f.record(t, victim.id); after != record {
		t.Errorf("%s's record changed: %+v, before %+v", victim.id, after, record)
	}
	if h, _, err := leaseDeadline(f.httpc, victim.addr); err != nil || h.Fenced || !h.IsLeader {
		t.Errorf("%s after a %v blackhole: fenced %v, leader %v (%v); want it leading, unfenced", victim.id, shortBlackhole, h.Fenced, h.IsLeader, err)
	}
	if lost := countLines(victim, m, msgLeaseLost); lost > 0 {
		t.Errorf("%s lost its lease %d times in a %v blackhole", victim.id, lost, shortBlackhole)
	}
}

// testLongBlackhole cuts the leader's path to etcd for longer than the TTL. It fences itself by
// its own lease deadline (GET /health 503 with fenced true, GET /cluster/claims empty), the
// others publish a map without it once etcd has expired its lease, not before its deadline, and
// once the path heals it registers again and every node's map lists it.
func testLongBlackhole(t *testing.T, f *faultMatrix) {
	view := f.c.waitStable(t, 30*time.Second)
	victim := f.c.byID(view.Cluster.Leader)
	m := f.mark(t)
	cut := time.Now()
	f.links[victim.id].blackhole()
	// No renewal can be answered from now on: once an answer that was on its way at the cut has
	// been applied, an upper bound of the node's deadline holds.
	time.Sleep(200 * time.Millisecond)
	var deadline time.Time
	waitFor(t, faultTTL, victim.id+"'s lease deadline", func() error {
		_, d, err := leaseDeadline(f.httpc, victim.addr)
		deadline = d
		return err
	})
	var fencedAt, droppedAt time.Time
	var droppedEpoch uint64
	var wrong []string // answers that contradict fencing, the first few
	for time.Since(cut) < faultTTL+time.Second || fencedAt.IsZero() || droppedAt.IsZero() {
		if time.Since(cut) > 15*time.Second {
			f.links[victim.id].heal()
			t.Fatalf("15s into the blackhole of %s: fenced seen: %v, a map without it stored: %v", victim.id, !fencedAt.IsZero(), !droppedAt.IsZero())
		}
		sent := time.Now()
		code, h, err := getHealth(f.httpc, victim.addr)
		switch {
		case err != nil:
		case h.Fenced != (code == http.StatusServiceUnavailable):
			wrong = append(wrong, fmt.Sprintf("+%v: GET /health answered %d with fenced %v", sent.Sub(cut).Round(time.Millisecond), code, h.Fenced))
		case !h.Fenced && sent.After(deadline):
			wrong = append(wrong, fmt.Sprintf("+%v: unfenced, asked %v after its lease deadline", sent.Sub(cut).Round(time.Millisecond), sent.Sub(deadline).Round(time.Millisecond)))
		case h.Fenced && fencedAt.IsZero():
			fencedAt = time.Now()
		}
		if !fencedAt.IsZero() {
			var a wiretest.Claims
			if err := fetchJSON(f.httpc, victim.addr, "/cluster/claims", &a); err == nil && (!a.Fenced || len(a.Primaries) > 0) {
				wrong = append(wrong, fmt.Sprintf("+%v: once fenced, GET /cluster/claims says fenced %v with %d primaries", sent.Sub(cut).Round(time.Millisecond), a.Fenced, len(a.Primaries)))
			}
		}
		if droppedAt.IsZero() {
			if stored := f.storedMap(t); stored != nil {
				if !slices.Contains(stored.Members(), victim.id) {
					droppedAt, droppedEpoch = time.Now(), stored.Epoch
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.links[victim.id].heal()
	healed := time.Now()
	waitFor(t, 15*time.Second, victim.id+" registered again, in every node's map", func() error {
		var h wiretest.Health
		if err := fetchJSON(f.httpc, victim.addr, "/health", &h); err != nil {
			return err // 503 while fenced
		}
		for _, n := range f.c.running() {
			var v wiretest.Cluster
			if err := fetchJSON(f.httpc, n.addr, "/cluster", &v); err != nil {
				return fmt.Errorf("%s: %w", n.id, err)
			}
			if _, ok := v.Cluster.Nodes[victim.id]; !ok {
				return fmt.Errorf("%s's map (epoch %d) does not list %s", n.id, v.Cluster.Epoch, victim.id)
			}
		}
		return nil
	})
	rejoined := time.Since(healed)
	f.c.waitStable(t, 30*time.Second)
	f.report(t, fmt.Sprintf("%v blackhole of the leader %s", healed.Sub(cut).Round(100*time.Millisecond), victim.id), m, rejoined,
		fmt.Sprintf("its lease deadline at most %v into the cut; fenced seen at +%v; a map without it (epoch %d) stored at +%v; back in every map %v after the heal",
			deadline.Sub(cut).Round(time.Millisecond), fencedAt.Sub(cut).Round(time.Millisecond), droppedEpoch,
			droppedAt.Sub(cut).Round(time.Millisecond), rejoined.Round(time.Millisecond)), victim)
	for i, w := range wrong {
		if i == 5 {
			t.Errorf("... and %d more", len(wrong)-5)
			break
		}
		t.Errorf("%s during the blackhole: %s", victim.id, w)
	}
	if !droppedAt.After(deadline) {
		t.Errorf("a map without %s was stored %v before its lease deadline", victim.id, deadline.Sub(droppedAt).Round(time.Millisecond))
	}
	if limit := 2 * faultTTL; droppedAt.Sub(cut) > limit {
		t.Errorf("the map without %s was stored %v into the cut, more than twice the TTL (%v)", victim.id, droppedAt.Sub(cut).Round(time.Millisecond), limit)
	}
}

// testLatency delays every byte of the leader's etcd path by 200ms each way while a node joins:
// the cluster converges, and the slow node keeps its lease.
func testLatency(t *testing.T, f *faultMatrix) {
	view := f.c.waitStable(t, 30*time.Second)
	victim := f.c.byID(view.Cluster.Leader)
	record := f.record(t, victim.id)
	m := f.mark(t)
	health := startHealthSampler([]*nodeProcess{victim})
	f.links[victim.id].setDelay(addedLatency)
	slowed := time.Now()
	node5 := f.launch(t, "node-5")
	f.waitReady(t, node5)
	f.c.waitStable(t, 30*time.Second)
	converged := time.Since(slowed)
	f.links[victim.id].setDelay(0)
	health.stop()
	f.report(t, fmt.Sprintf("%v each way on the leader %s's path", addedLatency, victim.id), m, converged,
		fmt.Sprintf("node-5's join placed and settled %v after it started; %s", converged.Round(time.Millisecond), health.summary(slowed)), victim)
	if after := f.record(t, victim.id); after != record {
		t.Errorf("%s's record changed under latency: %+v, before %+v", victim.id, after, record)
	}
	if lost := countLines(victim, m, msgLeaseLost); lost > 0 {
		t.Errorf("%s lost its lease %d times under %v of latency", victim.id, lost, addedLatency)
	}
	if code := node5.Terminate(t, 20*time.Second); code != 0 {
		t.Errorf("node-5 exited with status %d on SIGTERM, want 0", code)
	}
	f.c.waitStable(t, 30*time.Second)
}

// testCompactionMidStream makes a node miss a map and then compacts etcd's history past it:
// what etcd sends the node is held (its requests, lease renewals among them, still arrive)
// while another node crashes and the leader publishes a map without it; etcd is compacted,
// physically, at the current revision; then the node's connections are reset, dropping what
// was held, so its watch resumes from a compacted revision. It must read the map afresh and hold
// the newest one, with its lease intact.
func testCompactionMidStream(t *testing.T, f *faultMatrix) {
	view := f.c.waitStable(t, 30*time.Second)
	var victim, crasher *nodeProcess
	for _, n := range f.c.running() {
		switch {
		case n.id == view.Cluster.Leader:
		case victim == nil:
			victim = n
		case crasher == nil:
			crasher = n
		}
	}
	if victim == nil || crasher == nil {
		t.Fatalf("want two nodes other than the leader %s, have %d nodes", view.Cluster.Leader, len(f.c.running()))
	}
	record, crasherRecord := f.record(t, victim.id), f.record(t, crasher.id)
	m := f.mark(t)
	health := startHealthSampler([]*nodeProcess{victim})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cut := time.Now()
	f.links[victim.id].blackholeReplies()
	// A crash whose lease etcd ends at once, as it would after the TTL: the leader publishes a
	// map without the node within milliseconds.
	crasher.Kill(t)
	if _, err := f.etcd.client.Revoke(ctx, clientv3.LeaseID(crasherRecord.lease)); err != nil {
		t.Fatalf("revoke %s's lease: %v", crasher.id, err)
	}
	var stored *state.Map
	for {
		if stored = f.storedMap(t); stored != nil {
			if !slices.Contains(stored.Members(), crasher.id) {
				break
			}
		}
		if time.Since(cut) > shortBlackhole {
			f.links[victim.id].heal()
			t.Fatalf("%v after %s's crash, the stored map still lists it", time.Since(cut).Round(time.Millisecond), crasher.id)
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := f.etcd.client.Get(ctx, f.schema.Partitions())
	if err != nil {
		t.Fatal(err)
	}
	compacted := resp.Header.Revision
	if _, err := f.etcd.client.Compact(ctx, compacted, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact at revision %d: %v", compacted, err)
	}
	var held wiretest.Health
	heldErr := fetchJSON(f.httpc, victim.addr, "/health", &held)
	f.links[victim.id].reset()
	f.links[victim.id].heal()
	healed := time.Now()
	if heldErr != nil || held.Epoch >= stored.Epoch {
		t.Errorf("%s held epoch %d (%v) when etcd was compacted past the map of epoch %d: it did not miss the map, nothing was tested",
			victim.id, held.Epoch, heldErr, stored.Epoch)
	}
	waitFor(t, 15*time.Second, victim.id+" holding the newest map", func() error {
		var v wiretest.Cluster
		if err := fetchJSON(f.httpc, victim.addr, "/cluster", &v); err != nil {
			return err
		}
		if latest := f.storedEpoch(t); v.Cluster.Epoch != latest {
			return fmt.Errorf("%s holds epoch %d, etcd %d", victim.id, v.Cluster.Epoch, latest)
		}
		return nil
	})
	caughtUp := time.Since(healed)
	f.c.waitStable(t, 30*time.Second)
	health.stop()
	f.report(t, fmt.Sprintf("replies to %s held for %v while %s crashed, compacted at revision %d", victim.id, healed.Sub(cut).Round(time.Millisecond), crasher.id, compacted),
		m, caughtUp, fmt.Sprintf("%s held epoch %d, etcd %d; it held the newest map %v after its connections were reset; %s",
			victim.id, held.Epoch, stored.Epoch, caughtUp.Round(time.Millisecond), health.summary(cut)), victim)
	if after := f.record(t, victim.id); after != record {
		t.Errorf("%s's record changed: %+v, before %+v", victim.id, after, record)
	}
	if lost := countLines(victim, m, msgLeaseLost); lost > 0 {
		t.Errorf("%s lost its lease %d times", victim.id, lost)
	}
}

// TestFaultNoSpace fills an etcd of three members with a small quota (16 MiB) until etcd raises
// its NOSPACE alarm. A node then leaves: no map can be published, a node logs etcd's refusal,
// which prompts its size monitor to log the alarm and export it at GET /metrics; the nodes keep
// serving the last map. Once an operator has deleted the junk, compacted, defragmented every member and
// disarmed the alarm, a map without the node is published, and the node joins again.
func TestFaultNoSpace(t *testing.T) {
	f := startFaultMatrix(t, "--quota-backend-bytes", strconv.Itoa(noSpaceQuota))
	defer f.reportClaims(t)
	etcd, c := f.etcd, f.c
	view := c.waitStable(t, 30*time.Second)
	var leaver *nodeProcess
	var stayers []*nodeProcess
	for _, n := range c.nodes {
		if n.id != view.Cluster.Leader && leaver == nil {
			leaver = n
		} else {
			stayers = append(stayers, n)
		}
	}
	m := f.mark(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Junk under a prefix of its own, 512 KiB a key, until etcd refuses.
	junk := make([]byte, 512<<10)
	rand.Read(junk)
	puts := 0
	for {
		_, err := etcd.client.Put(ctx, fmt.Sprintf("/junk/%04d", puts), string(junk))
		if errors.Is(err, rpctypes.ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatalf("put junk %d: %v", puts, err)
		}
		if puts++; puts > 200 {
			t.Fatalf("etcd took %d MiB of junk without raising NOSPACE (quota %d MiB)", puts/2, noSpaceQuota>>20)
		}
	}
	filled := time.Now()
	if !f.noSpaceAlarm(ctx, t) {
		t.Fatal("etcd refused a put for want of space but lists no NOSPACE alarm")
	}

	// A map change that cannot be published.
	atLeave := f.mark(t)
	left := time.Now()
	if code := leaver.Terminate(t, 20*time.Second); code != 0 {
		t.Errorf("%s exited with status %d on SIGTERM under NOSPACE, want 0", leaver.id, code)
	}
	refusal := ""
	waitFor(t, 10*time.Second, "a node's log naming etcd's refusal", func() error {
		for _, n := range stayers {
			for _, l := range warnings(n, atLeave) {
				if strings.Contains(l.Error, msgSpaceExceeded) {
					refusal = fmt.Sprintf("%s: %s: %s", n.id, l.Msg, l.Error)
					return nil
				}
			}
		}
		return fmt.Errorf("no warning or error line of the remaining nodes says %q", msgSpaceExceeded)
	})
	refusedIn := time.Since(left)
	// The refused write prompts the node's size monitor to poll at once: it logs the alarm and
	// exports it, well before its next periodic poll.
	var alarmed *nodeProcess
	waitFor(t, 10*time.Second, "a node's log naming the NOSPACE alarm", func() error {
		for _, n := range stayers {
			if countLines(n, m, msgNoSpaceAlarm) > 0 {
				alarmed = n
				return nil
			}
		}
		return fmt.Errorf("no node logged %q", msgNoSpaceAlarm)
	})
	alarmLogged := time.Since(filled)
	if v, err := metricValue(c.httpc, alarmed.addr, "clusterkit_etcd_nospace_alarm"); err != nil || v != 1 {
		t.Errorf("%s's GET /metrics under NOSPACE: clusterkit_etcd_nospace_alarm = %v (%v), want 1", alarmed.id, v, err)
	}
	if e := f.storedEpoch(t); e != m.epoch {
		t.Errorf("a map was published under NOSPACE: epoch %d, before %d", e, m.epoch)
	}
	for _, n := range stayers {
		var v wiretest.Cluster
		if err := fetchJSON(c.httpc, n.addr, "/cluster", &v); err != nil {
			t.Errorf("%s under NOSPACE: %v", n.id, err)
		} else if v.Cluster.Epoch != m.epoch {
			t.Errorf("%s under NOSPACE serves epoch %d, want the last map's %d", n.id, v.Cluster.Epoch, m.epoch)
		}
	}

	// What an operator does (README, "etcd stays bounded").
	fixing := time.Now()
	if _, err := etcd.client.Delete(ctx, "/junk/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("delete the junk: %v", err)
	}
	resp, err := etcd.client.Get(ctx, f.schema.Partitions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.client.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact: %v", err)
	}
	for _, mb := range etcd.members {
		if _, err := etcd.client.Defragment(ctx, mb.URL); err != nil {
			t.Fatalf("defragment %s: %v", mb.name, err)
		}
	}
	alarms, err := etcd.client.AlarmList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alarms.Alarms {
		if _, err := etcd.client.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm}); err != nil {
			t.Fatalf("disarm %v of member %x: %v", a.Alarm, a.MemberID, err)
		}
	}
	disarmed := time.Now()
	if f.noSpaceAlarm(ctx, t) {
		t.Fatal("the NOSPACE alarm is still armed after AlarmDisarm")
	}
	waitFor(t, 15*time.Second, "a map without "+leaver.id+" on every node", func() error {
		for _, n := range stayers {
			var v wiretest.Cluster
			if err := fetchJSON(c.httpc, n.addr, "/cluster", &v); err != nil {
				return fmt.Errorf("%s: %w", n.id, err)
			}
			if _, ok := v.Cluster.Nodes[leaver.id]; ok {
				return fmt.Errorf("%s's map (epoch %d) still lists %s", n.id, v.Cluster.Epoch, leaver.id)
			}
		}
		return nil
	})
	recovered := time.Since(disarmed)
	c.waitStable(t, 30*time.Second)
	lost := 0
	for _, n := range stayers {
		lost += countLines(n, m, msgLeaseLost)
	}
	f.report(t, fmt.Sprintf("NOSPACE (quota %d MiB, %d puts of 512 KiB)", noSpaceQuota>>20, puts), m, recovered,
		fmt.Sprintf("etcd's refusal logged %v after %s's SIGTERM (%s); the alarm logged %v after it was raised; leases lost: %d; space freed in %v (delete, compact, defragment 3 members, disarm); the map without %s on every node %v after the disarm",
			refusedIn.Round(time.Millisecond), leaver.id, refusal, alarmLogged.Round(time.Millisecond), lost,
			disarmed.Sub(fixing).Round(time.Millisecond), leaver.id, recovered.Round(time.Millisecond)), stayers...)

	// And the cluster takes a join again.
	leaver.Start(t)
	f.waitReady(t, leaver)
	c.waitStable(t, 30*time.Second)
}

// noSpaceAlarm reports whether etcd lists a NOSPACE alarm.
func (f *faultMatrix) noSpaceAlarm(ctx context.Context, t *testing.T) bool {
	t.Helper()
	resp, err := f.etcd.client.AlarmList(ctx)
	if err != nil {
		t.Fatalf("alarm list: %v", err)
	}
	return slices.ContainsFunc(resp.Alarms, func(a *etcdserverpb.AlarmMember) bool { return a.Alarm == etcdserverpb.AlarmType_NOSPACE })
}
