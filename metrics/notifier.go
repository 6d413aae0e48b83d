package metrics

import "github.com/prometheus/client_golang/prometheus"

// Notifier is what a notifier measures of the webhooks it delivers. A nil
// *Notifier measures nothing.
type Notifier struct {
	delivered prometheus.Counter
	retried   prometheus.Counter
	failed    *prometheus.CounterVec
}

// NewNotifier registers a notifier's collectors on reg.
func NewNotifier(reg prometheus.Registerer) *Notifier {
	n := &Notifier{
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "winch_notifications_delivered_total",
			Help: "Notifications a receiver took (answered 2xx).",
		}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "winch_notifications_retried_total",
			Help: "Tries that failed (an error, 5xx, 408 or 429) and were tried again later.",
		}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "winch_notifications_failed_total",
			Help: "Notifications given up on, by why: refused (a 4xx), expired (still failing at WINCH_NOTIFY_RETRY_FOR), not_allowed (outside WINCH_NOTIFY_ALLOW), unencodable.",
		}, []string{"reason"}),
	}
	// Every reason from the start, at 0, so that an alert on a rate sees
	// the series before the first failure.
	for _, r := range []string{"refused", "expired", "not_allowed", "unencodable"} {
		n.failed.WithLabelValues(r)
	}
	reg.MustRegister(n.delivered, n.retried, n.failed)
	return n
}

// Delivered counts a notification a receiver took.
func (n *Notifier) Delivered() {
	if n != nil {
		n.delivered.Inc()
	}
}

// Retried counts a failed try that will be tried again.
func (n *Notifier) Retried() {
	if n != nil {
		n.retried.Inc()
	}
}

// Failed counts a notification given up on, for reason.
func (n *Notifier) Failed(reason string) {
	if n != nil {
		n.failed.WithLabelValues(reason).Inc()
	}
}
