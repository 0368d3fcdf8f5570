package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BackupRepository is a repository that BackupPolicies of any namespace name:
// an S3 bucket (and prefix), or a local directory for tests, and the secret
// holding the repository password. It is cluster-scoped, as a bucket is
// shared by the agents of every node; its secrets are named with their
// namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=brepo,categories=backupd
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Bucket",type=string,JSONPath=`.spec.s3.bucket`
// +kubebuilder:printcolumn:name="Prefix",type=string,JSONPath=`.spec.s3.prefix`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.s3.endpoint`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BackupRepository struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   BackupRepositorySpec   `json:"spec"`
	Status BackupRepositoryStatus `json:"status,omitempty"`
}

// BackupRepositorySpec says where a repository is and how to open it.
//
// +kubebuilder:validation:XValidation:rule="has(self.s3) != has(self.local)",message="spec: exactly one of spec.s3 and spec.local must be set"
type BackupRepositorySpec struct {
	// S3 is a bucket of an S3-compatible object store.
	// +optional
	S3 *S3Location `json:"s3,omitempty"`

	// Local is a directory on each node's file system. For tests only: the
	// agents of different nodes would each see a different directory, and a
	// node's disk is no place for its own backups.
	// +optional
	Local *LocalLocation `json:"local,omitempty"`

	// PasswordSecretRef names the secret key holding the repository
	// password (trailing newline ignored). The password never appears in
	// logs, metrics, events or status.
	// +required
	PasswordSecretRef SecretKeySelector `json:"passwordSecretRef"`

	// Uploads is how many packs are uploaded in parallel; default: the
	// repository's.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	// +optional
	Uploads *int32 `json:"uploads,omitempty"`

	// Timeout is the deadline of each attempt of a storage operation (an
	// attempt that runs out of it is retried); S3 only. Default: the retry
	// layer's.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[-+]?([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="spec.timeout must be a positive duration, such as 30s or 2m"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// RetryFor is how long a storage operation that keeps failing
	// transiently (the store stopped or unreachable) is retried before
	// the run fails; S3 only. Default: the retry layer's, 1 minute.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[-+]?([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="spec.retryFor must be a positive duration, such as 30s or 5m"
	// +optional
	RetryFor *metav1.Duration `json:"retryFor,omitempty"`
}

// S3Location is a bucket (and a prefix in it) of an S3-compatible store,
// and how to reach and authenticate to it.
//
// +kubebuilder:validation:XValidation:rule="has(self.credentialsSecretRef) != (has(self.useServiceAccount) && self.useServiceAccount)",message="spec.s3: set exactly one of spec.s3.credentialsSecretRef and spec.s3.useServiceAccount"
type S3Location struct {
	// Bucket is the bucket's name.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9][a-z0-9.-]*[a-z0-9]$')",message="spec.s3.bucket must be a bucket name: lower-case letters, digits, dots and hyphens, 3 to 63 characters"
	// +required
	Bucket string `json:"bucket"`

	// Prefix is the key prefix of the repository inside the bucket, without
	// leading or trailing slash; empty: the bucket's root.
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.endsWith('/')",message="spec.s3.prefix must not start or end with a slash"
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// Endpoint is the store's base URL with its scheme, http:// or https://;
	// empty: AWS S3.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^/]+(/.*)?$')",message="spec.s3.endpoint must be a URL with scheme http:// or https://, such as https://minio.example:9000"
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// Region is the bucket's region; default us-east-1 for a custom
	// endpoint, else the AWS SDK's.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Region string `json:"region,omitempty"`

	// PathStyle addresses the bucket by path ("true": what MinIO and most
	// S3-compatible stores want) or by virtual host ("false": AWS); "auto":
	// by path for a custom endpoint, by host for AWS.
	// +kubebuilder:validation:Enum=auto;"true";"false"
	// +kubebuilder:default=auto
	// +optional
	PathStyle string `json:"pathStyle,omitempty"`

	// CASecretRef names a secret key holding PEM certificates to trust
	// besides the system's (a private CA).
	// +optional
	CASecretRef *SecretKeySelector `json:"caSecretRef,omitempty"`

	// InsecureSkipVerify turns off the check of the store's TLS
	// certificate. For tests only: anyone on the path can then read and
	// change the traffic.
	// +optional
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`

	// CredentialsSecretRef names the secret holding static credentials.
	// +optional
	CredentialsSecretRef *S3CredentialsSecretRef `json:"credentialsSecretRef,omitempty"`

	// UseServiceAccount takes credentials from the agent's environment
	// instead of a secret: IRSA (a role ARN annotation on the agent's
	// ServiceAccount), EKS Pod Identity, or any other source the AWS SDK
	// reads. No secret is read.
	// +optional
	UseServiceAccount bool `json:"useServiceAccount,omitempty"`

	// AllowUnconditionalWrites is for a store that refuses conditional
	// writes (If-None-Match: *): write without them. An object can then be
	// overwritten by a racing writer instead of the write failing.
	// +optional
	AllowUnconditionalWrites bool `json:"allowUnconditionalWrites,omitempty"`
}

// S3CredentialsSecretRef names a secret holding S3 static credentials and
// the keys in it.
type S3CredentialsSecretRef struct {
	// Namespace of the secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Namespace string `json:"namespace"`

	// Name of the secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// AccessKeyIDKey is the key of the access key id in the secret.
	// +kubebuilder:default=AWS_ACCESS_KEY_ID
	// +kubebuilder:validation:MaxLength=253
	// +optional
	AccessKeyIDKey string `json:"accessKeyIDKey,omitempty"`

	// SecretAccessKeyKey is the key of the secret access key in the secret.
	// +kubebuilder:default=AWS_SECRET_ACCESS_KEY
	// +kubebuilder:validation:MaxLength=253
	// +optional
	SecretAccessKeyKey string `json:"secretAccessKeyKey,omitempty"`

	// SessionTokenKey is the key of a session token in the secret
	// (temporary credentials); empty: none.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	SessionTokenKey string `json:"sessionTokenKey,omitempty"`
}

// SecretKeySelector names one key of a secret of a namespace.
type SecretKeySelector struct {
	// Namespace of the secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Namespace string `json:"namespace"`

	// Name of the secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// Key in the secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Key string `json:"key"`
}

// LocalLocation is a directory on the node. For tests only.
type LocalLocation struct {
	// Path is the absolute path of the repository directory, as the agent
	// sees it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="spec.local.path must be an absolute path"
	// +required
	Path string `json:"path"`
}

// BackupRepositoryStatus is written by the agent that holds the leader
// lease.
type BackupRepositoryStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (the repository opens with the password and
	// credentials given).
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// BackupRepositoryList is a list of BackupRepositories.
//
// +kubebuilder:object:root=true
type BackupRepositoryList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BackupRepository `json:"items"`
}
