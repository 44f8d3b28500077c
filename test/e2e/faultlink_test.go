package e2e

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultLink is one node's path to etcd: a TCP proxy on 127.0.0.1 in front of each etcd member,
// whose URLs the node is given as ETCD_ENDPOINTS, so that faults can be injected on that node's
// path alone. Its methods may be called from any goroutine. It is closed, and its goroutines
// stopped and waited for, when the test ends.
//
//   - blackhole holds every byte of both directions, on open connections and on those accepted
//     meanwhile, until heal delivers them: a network that drops packets which TCP retransmits
//     once the path is back. Connections stay open, so the node learns of the cut only from its
//     own timeouts. blackholeReplies holds only what etcd sends: the node's requests, its lease
//     renewals among them, still arrive.
//   - setDelay delivers every byte of both directions that much later, in order.
//   - reset closes every open connection and drops the bytes it holds, as a path that comes
//     back after the peers' connection state is gone; the node connects again at once.
//
// A member that is down refuses the proxy's connection, and the proxy then closes the node's.
type faultLink struct {
	proxies []*faultProxy
}

// newFaultLink starts a proxy in front of each of the client URLs (http://host:port).
func newFaultLink(t *testing.T, memberURLs []string) *faultLink {
	t.Helper()
	link := &faultLink{}
	t.Cleanup(link.close)
	for _, u := range memberURLs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := &faultProxy{
			target: strings.TrimPrefix(u, "http://"),
			l:      l,
			conns:  map[net.Conn]bool{},
			open:   [2]chan struct{}{make(chan struct{}), make(chan struct{})},
			done:   make(chan struct{}),
		}
		close(p.open[toEtcd])
		close(p.open[toNode])
		link.proxies = append(link.proxies, p)
		p.wg.Go(p.accept)
	}
	return link
}

// endpoints is the node's ETCD_ENDPOINTS.
func (l *faultLink) endpoints() string {
	var urls []string
	for _, p := range l.proxies {
		urls = append(urls, "http://"+p.l.Addr().String())
	}
	return strings.Join(urls, ",")
}

func (l *faultLink) blackhole() {
	for _, p := range l.proxies {
		p.cut(toEtcd)
		p.cut(toNode)
	}
}

func (l *faultLink) blackholeReplies() {
	for _, p := range l.proxies {
		p.cut(toNode)
	}
}

func (l *faultLink) heal() {
	for _, p := range l.proxies {
		p.heal()
	}
}

func (l *faultLink) setDelay(d time.Duration) {
	for _, p := range l.proxies {
		p.mu.Lock()
		p.delay = d
		p.mu.Unlock()
	}
}

func (l *faultLink) reset() {
	for _, p := range l.proxies {
		p.reset()
	}
}

func (l *faultLink) close() {
	for _, p := range l.proxies {
		p.close()
	}
}

// faultProxy forwards the connections accepted on l to target, each direction through a queue
// of chunks that a writer delivers when they are due and the path is open.
type faultProxy struct {
	target string
	l      net.Listener
	// done is closed by close: every wait ends.
	done chan struct{}
	wg   sync.WaitGroup

	mu sync.Mutex
	// open[dir] is closed while bytes flow in direction dir; cut replaces it with an open
	// channel that heal closes.
	open   [2]chan struct{}
	delay  time.Duration
	conns  map[net.Conn]bool
	closed bool
}

func (p *faultProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve connects c to the target and forwards both directions until either side closes.
func (p *faultProxy) serve(c net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, up) {
		return
	}
	defer p.untrack(c, up)
	var g sync.WaitGroup
	g.Go(func() { p.pipe(up, c, toEtcd) })
	p.pipe(c, up, toNode)
	g.Wait()
}

// The directions of a connection.
const (
	toEtcd = 0
	toNode = 1
)

// track records the connections; false (and both closed) once the proxy is closed.
func (p *faultProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = true
	}
	return true
}

func (p *faultProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
	p.mu.Unlock()
}

// chunk is what one read returned, and when it is due at the other side.
type chunk struct {
	due time.Time
	b   []byte
}

// pipe copies src to dst, in direction dir, through a queue: the reader stamps each read with
// its due time, the writer delivers it then, once the direction is open. When either side fails
// both connections are closed, which ends the other direction too.
func (p *faultProxy) pipe(dst, src net.Conn, dir int) {
	q := make(chan chunk, 256)
	stopped := make(chan struct{}) // closed when the writer gives up
	var g sync.WaitGroup
	g.Go(func() {
		defer close(stopped)
		defer src.Close()
		defer dst.Close()
		for ch := range q {
			if !p.wait(ch.due, dir) {
				return
			}
			if _, err := dst.Write(ch.b); err != nil {
				return
			}
		}
	})
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			due := time.Now().Add(p.delay)
			p.mu.Unlock()
			select {
			case q <- chunk{due: due, b: append([]byte(nil), buf[:n]...)}:
			case <-stopped:
				err = net.ErrClosed
			}
		}
		if err != nil {
			break
		}
	}
	close(q)
	g.Wait()
}

// wait waits until due and until direction dir is open; false when the proxy is closed first.
func (p *faultProxy) wait(due time.Time, dir int) bool {
	if d := time.Until(due); d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-p.done:
			return false
		}
	}
	p.mu.Lock()
	open := p.open[dir]
	p.mu.Unlock()
	// A blackhole that begins after this load lets the chunk through: it was on the wire.
	select {
	case <-open:
		return true
	case <-p.done:
		return false
	}
}

// cut holds direction dir until heal.
func (p *faultProxy) cut(dir int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open[dir]:
		p.open[dir] = make(chan struct{})
	default: // already cut
	}
}

func (p *faultProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, open := range p.open {
		select {
		case <-open:
		default:
			close(open)
		}
	}
}

// reset closes every open connection; the bytes their queues hold are dropped.
func (p *faultProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *faultProxy) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.done)
		for c := range p.conns {
			c.Close()
		}
	}
	p.mu.Unlock()
	p.l.Close()
	p.wg.Wait()
}
