package collectors

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Volumes are the node agent's metrics (docs/DESIGN.md §3.8):
// backupd_volume_info joins a policy's series (policy label) to the
// Kubernetes names of its volume, and backupd_agent_leader says whether the
// agent holds the leader lease. It implements the agent's Metrics.
type Volumes struct {
	info   *prometheus.GaugeVec
	leader prometheus.Gauge
}

// VolumeInfoLabels are the labels of backupd_volume_info, in the order of
// SetVolumes' rows.
var VolumeInfoLabels = [6]string{"policy", "namespace", "persistentvolumeclaim", "pod", "volume", "node"}

// NewVolumes makes the agent's metrics and registers them.
func NewVolumes(reg prometheus.Registerer) (*Volumes, error) {
	v := &Volumes{
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "backupd_volume_info",
			Help: "1 for each volume this agent backs up: joins a policy's series (policy label) to its Kubernetes names; the pod label is the pod mounting the volume now, and the series is replaced when it changes."},
			VolumeInfoLabels[:]),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "backupd_agent_leader",
			Help: "1 while this agent holds the leader lease (runs retention and verify of the shared repositories)."}),
	}
	for _, c := range []prometheus.Collector{v.info, v.leader} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register agent metrics: %w", err)
		}
	}
	return v, nil
}

// SetVolumes replaces every backupd_volume_info series by one per row
// (label values in VolumeInfoLabels' order): a volume whose pod changed
// leaves no old series behind.
func (v *Volumes) SetVolumes(rows [][6]string) {
	v.info.Reset()
	for _, r := range rows {
		v.info.WithLabelValues(r[:]...).Set(1)
	}
}

// SetLeader sets backupd_agent_leader.
func (v *Volumes) SetLeader(on bool) {
	if on {
		v.leader.Set(1)
	} else {
		v.leader.Set(0)
	}
}
