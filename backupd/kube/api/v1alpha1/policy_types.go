package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types of a BackupPolicy's status.
const (
	// ConditionReady: the policy is valid, its repository exists and opens,
	// and at least one volume is selected.
	ConditionReady = "Ready"
	// ConditionRPOMet: every selected volume's newest good snapshot is
	// younger than the policy's RPO.
	ConditionRPOMet = "RPOMet"
	// ConditionDrillPassed: every selected volume's last restore drill
	// proved its snapshot byte-exact within the RTO.
	ConditionDrillPassed = "DrillPassed"
)

// Drill results of a volume (VolumeStatus.LastDrillResult).
const (
	DrillPassed = "Passed"
	DrillFailed = "Failed"
)

// BackupPolicy says which volumes of its namespace are backed up, into
// which BackupRepository, when, and what "safe" means for them (RPO, RTO,
// drills). Each selected volume gets its own schedule on the node its pod
// runs on. The status says, per volume, when the last good backup and
// drill were.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=bpol,categories=backupd
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Repository",type=string,JSONPath=`.spec.repository`
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="RPO",type=string,JSONPath=`.spec.rpo`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="RPOMet",type=string,JSONPath=`.status.conditions[?(@.type=="RPOMet")].status`
// +kubebuilder:printcolumn:name="DrillPassed",type=string,JSONPath=`.status.conditions[?(@.type=="DrillPassed")].status`
// +kubebuilder:printcolumn:name="Last Backup",type=date,JSONPath=`.status.lastBackupTime`
// +kubebuilder:printcolumn:name="Volumes",type=integer,JSONPath=`.status.volumeCount`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`,priority=1
type BackupPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   BackupPolicySpec   `json:"spec"`
	Status BackupPolicyStatus `json:"status,omitempty"`
}

// BackupPolicySpec is the desired protection of a set of volumes.
//
// +kubebuilder:validation:XValidation:rule="has(self.selector) != (has(self.meshDefault) && self.meshDefault)",message="spec: set exactly one of spec.selector and spec.meshDefault: true"
type BackupPolicySpec struct {
	// Repository is the name of the BackupRepository the snapshots go to.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.repository must be the name of a BackupRepository (a DNS subdomain)"
	// +required
	Repository string `json:"repository"`

	// Selector picks the volumes: PVCs by their labels, and/or the volumes
	// of pods by the pods' labels.
	// +optional
	Selector *VolumeSelector `json:"selector,omitempty"`

	// MeshDefault, when true, picks every mesh pod's default volumes in the
	// namespace (Istio, Linkerd and Consul pods: the workload's PVCs and
	// the proxy's log and config volumes; emptyDir only with
	// includeEmptyDir; projected, secret and configMap volumes never).
	// +optional
	MeshDefault bool `json:"meshDefault,omitempty"`

	// IncludeEmptyDir also backs up the selected pods' emptyDir volumes.
	// +optional
	IncludeEmptyDir bool `json:"includeEmptyDir,omitempty"`

	// Schedule is when each volume's cycle runs (backup, then verify and
	// drill when due): cron with an optional seconds field, or a
	// descriptor: "*/15 * * * *", "0 */5 * * * *", "@hourly", "@every 10m".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every ([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|(CRON_TZ=[^ ]+ +|TZ=[^ ]+ +)?[0-9A-Za-z*/,?-]+( +[0-9A-Za-z*/,?-]+){4,5})$')",message="spec.schedule must be a cron expression of 5 or 6 fields or a descriptor such as @hourly or @every 10m"
	// +required
	Schedule string `json:"schedule"`

	// RPO is the recovery point objective: each volume's newest good
	// snapshot must be younger. It should be at least the schedule's
	// interval.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[-+]?([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="spec.rpo must be a positive duration, such as 15m or 1h30m"
	// +required
	RPO metav1.Duration `json:"rpo"`

	// RTO is the recovery time objective: a drill must restore and prove
	// the newest snapshot within it. Default: no RTO is checked.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[-+]?([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="spec.rto must be a positive duration, such as 10m"
	// +optional
	RTO *metav1.Duration `json:"rto,omitempty"`

	// Retention is which of each volume's snapshots are kept after a
	// successful backup; the others are forgotten and their data pruned.
	// Omitted: every snapshot is kept.
	// +optional
	Retention *Retention `json:"retention,omitempty"`

	// Drill is when restore drills run.
	// +optional
	Drill *DrillSpec `json:"drill,omitempty"`

	// Verify is when the repository is read back and the source scrubbed.
	// +optional
	Verify *VerifySpec `json:"verify,omitempty"`

	// AppendOnly lists base-name patterns (filepath.Match) of append-only
	// files, which get tail-only reads; default ["*.log", "*.jsonl"].
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	// +optional
	AppendOnly []string `json:"appendOnly,omitempty"`

	// Exclude lists gitignore-style patterns of paths below each volume not
	// to back up: "*.tmp", "/cache/", "**/lost+found", "!keep.tmp".
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=1024
	// +listType=atomic
	// +optional
	Exclude []string `json:"exclude,omitempty"`

	// Suspend stops scheduling new runs for the policy's volumes; status
	// and snapshots are kept.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// VolumeSelector picks volumes by PVC labels and/or pod labels; a volume is
// picked when it matches any selector given.
//
// +kubebuilder:validation:XValidation:rule="has(self.persistentVolumeClaimSelector) || has(self.podSelector)",message="spec.selector: set spec.selector.persistentVolumeClaimSelector, spec.selector.podSelector or both"
type VolumeSelector struct {
	// PersistentVolumeClaimSelector picks the PVCs of the namespace whose
	// labels match (while a pod on some node mounts them).
	// +optional
	PersistentVolumeClaimSelector *metav1.LabelSelector `json:"persistentVolumeClaimSelector,omitempty"`

	// PodSelector picks the volumes (PVCs, and emptyDir with
	// includeEmptyDir) of the pods of the namespace whose labels match.
	// +optional
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`
}

// Retention keeps snapshots by count and by calendar period, as restic's
// forget does. At least one count must be positive.
//
// +kubebuilder:validation:XValidation:rule="(has(self.keepLast) ? self.keepLast : 0) + (has(self.keepHourly) ? self.keepHourly : 0) + (has(self.keepDaily) ? self.keepDaily : 0) + (has(self.keepWeekly) ? self.keepWeekly : 0) + (has(self.keepMonthly) ? self.keepMonthly : 0) > 0",message="spec.retention: at least one of keepLast, keepHourly, keepDaily, keepWeekly and keepMonthly must be greater than 0 (omit spec.retention to keep every snapshot)"
type Retention struct {
	// KeepLast keeps the N newest snapshots.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	KeepLast int32 `json:"keepLast,omitempty"`
	// KeepHourly keeps the newest snapshot of each of the last N hours.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	KeepHourly int32 `json:"keepHourly,omitempty"`
	// KeepDaily keeps the newest snapshot of each of the last N days.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	KeepDaily int32 `json:"keepDaily,omitempty"`
	// KeepWeekly keeps the newest snapshot of each of the last N weeks.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	KeepWeekly int32 `json:"keepWeekly,omitempty"`
	// KeepMonthly keeps the newest snapshot of each of the last N months.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	KeepMonthly int32 `json:"keepMonthly,omitempty"`
}

// DrillSpec is when restore drills run: each restores a volume's newest
// snapshot into scratch space and proves every file byte-exact against the
// hash recorded at backup time, timed against the RTO.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.enabled) && !self.enabled) ? has(self.schedule) : true",message="spec.drill.schedule is required when drills are enabled"
type DrillSpec struct {
	// Enabled: default true.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// Schedule is when a drill is due (cron or descriptor, as
	// spec.schedule); it runs at the end of the next cycle after that.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every ([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|(CRON_TZ=[^ ]+ +|TZ=[^ ]+ +)?[0-9A-Za-z*/,?-]+( +[0-9A-Za-z*/,?-]+){4,5})$')",message="spec.drill.schedule must be a cron expression of 5 or 6 fields or a descriptor such as @daily or @every 6h"
	// +optional
	Schedule string `json:"schedule,omitempty"`
}

// VerifySpec is when verify runs (a repository read-back and a source
// scrub) are due, and how much each reads.
type VerifySpec struct {
	// Schedule is when a verify run is due (cron or descriptor, as
	// spec.schedule).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every ([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+|(CRON_TZ=[^ ]+ +|TZ=[^ ]+ +)?[0-9A-Za-z*/,?-]+( +[0-9A-Za-z*/,?-]+){4,5})$')",message="spec.verify.schedule must be a cron expression of 5 or 6 fields or a descriptor such as @daily or @every 6h"
	// +required
	Schedule string `json:"schedule"`

	// ReadPercent is the share of the packs read back per verify run, in
	// percent; runs rotate, so 100/readPercent runs read everything.
	// Default 100.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	ReadPercent *int32 `json:"readPercent,omitempty"`

	// FullReadEvery: an append-only file is re-read whole by the Nth backup
	// after its last full read, so an edit in its older part is caught
	// within N backups. Default 10.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	FullReadEvery *int32 `json:"fullReadEvery,omitempty"`
}

// BackupPolicyStatus is kept true by the node agents: each writes the
// entries of the volumes on its own node.
type BackupPolicyStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, RPOMet, DrillPassed.
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// LastBackupTime is the oldest of the volumes' last good backups: the
	// policy is as fresh as its least recently backed-up volume.
	// +optional
	LastBackupTime *metav1.Time `json:"lastBackupTime,omitempty"`

	// VolumeCount is the number of volumes selected (len(volumes)).
	// +optional
	VolumeCount int32 `json:"volumeCount,omitempty"`

	// Volumes has one entry per selected volume.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=4096
	// +optional
	Volumes []VolumeStatus `json:"volumes,omitempty"`
}

// VolumeStatus is the state of one selected volume.
type VolumeStatus struct {
	// Name identifies the volume stably across pod restarts: "pvc/<claim>"
	// for a PVC, "pod/<pod>/<volume>" for another volume of a pod.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +required
	Name string `json:"name"`

	// Namespace of the pod and PVC.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// PersistentVolumeClaim is the claim's name; empty for a volume that is
	// not a PVC.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	PersistentVolumeClaim string `json:"persistentVolumeClaim,omitempty"`

	// Pod is the pod that last mounted the volume where it was backed up.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Pod string `json:"pod,omitempty"`

	// Volume is the volume's name in the pod spec.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Volume string `json:"volume,omitempty"`

	// Node is the node whose agent backs the volume up.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Node string `json:"node,omitempty"`

	// LastBackupTime is when the newest good snapshot was taken.
	// +optional
	LastBackupTime *metav1.Time `json:"lastBackupTime,omitempty"`

	// LastSnapshotID is the id of the newest good snapshot.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	LastSnapshotID string `json:"lastSnapshotID,omitempty"`

	// LastDrillTime is when the last restore drill ended.
	// +optional
	LastDrillTime *metav1.Time `json:"lastDrillTime,omitempty"`

	// LastDrillResult is Passed or Failed.
	// +kubebuilder:validation:Enum=Passed;Failed
	// +optional
	LastDrillResult string `json:"lastDrillResult,omitempty"`

	// LastError is the last failed run's error (never a secret); empty
	// after a success.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// BackupPolicyList is a list of BackupPolicies.
//
// +kubebuilder:object:root=true
type BackupPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupPolicy `json:"items"`
}
