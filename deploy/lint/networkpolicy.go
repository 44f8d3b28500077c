package lint

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// checkNetworkPolicies checks, for a StatefulSet whose pods run the embedded etcd, that the
// file's NetworkPolicies admit only the StatefulSet's own pods to the etcd client and peer
// ports (no other pod, namespace or address block), still admit those pods there (the members
// reach each other), and leave the HTTP API open to every client. Policies add up, so the rules
// of every policy that selects the pods for ingress are taken together.
func checkNetworkPolicies(m *Manifests, sts *appsv1.StatefulSet, c corev1.Container, units []Unit, node *Node) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: StatefulSet %s: %s", m.File, sts.Name, fmt.Sprintf(format, args...)))
	}
	var pods []Unit
	for _, u := range units {
		if u.Node && strings.HasPrefix(u.Name, sts.Name+"-") {
			pods = append(pods, u)
		}
	}
	if !slices.ContainsFunc(pods, func(u Unit) bool { return u.embedded() }) {
		return nil // on an external etcd: its own file's business
	}
	httpPort, err := pods[0].httpPort()
	if err != nil || sts.Spec.Selector == nil || len(sts.Spec.Selector.MatchLabels) == 0 {
		return nil // reported by CheckUnits and CheckManifests
	}
	podLabels := labels.Set(sts.Spec.Template.Labels)
	ns := namespaceOf(sts.ObjectMeta)
	var rules []networkingv1.NetworkPolicyIngressRule
	var names []string
	for _, p := range m.NetworkPolicies {
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			fail("NetworkPolicy %s: podSelector: %v", p.Name, err)
			continue
		}
		if namespaceOf(p.ObjectMeta) != ns || !sel.Matches(podLabels) || !restrictsIngress(p) {
			continue
		}
		rules = append(rules, p.Spec.Ingress...)
		names = append(names, p.Name)
	}
	client, peer := node.EtcdPorts(httpPort)
	if len(names) == 0 {
		fail("no NetworkPolicy restricts ingress to the pods: the embedded etcd's ports %d and %d are open to every pod of the network; admit the StatefulSet's pods only", client, peer)
		return errs
	}
	for _, port := range []int{client, peer} {
		admitted := false // the StatefulSet's pods, by some rule
		for _, r := range rules {
			if !coversPort(r.Ports, port, c) {
				continue
			}
			if len(r.From) == 0 {
				fail("NetworkPolicy %v admits every source to the embedded etcd's port %d: admit the StatefulSet's pods only (from: podSelector)", names, port)
				continue
			}
			for _, from := range r.From {
				switch {
				case from.IPBlock != nil:
					fail("NetworkPolicy %v admits ipBlock %s to the embedded etcd's port %d: admit the StatefulSet's pods only", names, from.IPBlock.CIDR, port)
				case from.NamespaceSelector != nil:
					fail("NetworkPolicy %v admits pods of other namespaces to the embedded etcd's port %d: admit the StatefulSet's pods only", names, port)
				case !narrower(from.PodSelector, sts.Spec.Selector.MatchLabels):
					fail("NetworkPolicy %v admits pods other than the StatefulSet's to the embedded etcd's port %d: the podSelector must require the StatefulSet's labels %v", names, port, sts.Spec.Selector.MatchLabels)
				default:
					sel, err := metav1.LabelSelectorAsSelector(from.PodSelector)
					admitted = admitted || err == nil && sel.Matches(podLabels)
				}
			}
		}
		if !admitted {
			fail("no NetworkPolicy rule admits the StatefulSet's pods to the embedded etcd's port %d: the members could not reach each other", port)
		}
	}
	open := slices.ContainsFunc(rules, func(r networkingv1.NetworkPolicyIngressRule) bool {
		return len(r.From) == 0 && coversPort(r.Ports, httpPort, c)
	})
	if !open {
		fail("no NetworkPolicy rule admits every source to the HTTP API port %d: clients could not reach the nodes", httpPort)
	}
	return errs
}

// restrictsIngress reports whether a policy governs its pods' ingress: it names Ingress among
// its policyTypes, or names none (Kubernetes then assumes Ingress).
func restrictsIngress(p *networkingv1.NetworkPolicy) bool {
	return len(p.Spec.PolicyTypes) == 0 || slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
}

// coversPort reports whether the ports of a rule include the TCP port port of container c: no
// ports means all of them; a named port is one of the container's.
func coversPort(ports []networkingv1.NetworkPolicyPort, port int, c corev1.Container) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.String:
			for _, cp := range c.Ports {
				if cp.Name == p.Port.StrVal && int(cp.ContainerPort) == port {
					return true
				}
			}
		default:
			first, last := p.Port.IntValue(), p.Port.IntValue()
			if p.EndPort != nil {
				last = int(*p.EndPort)
			}
			if first <= port && port <= last {
				return true
			}
		}
	}
	return false
}

// narrower reports whether a pod selector selects no pod that want does not: it requires every
// label of want.
func narrower(sel *metav1.LabelSelector, want map[string]string) bool {
	if sel == nil {
		return false
	}
	for k, v := range want {
		if sel.MatchLabels[k] != v {
			return false
		}
	}
	return true
}
