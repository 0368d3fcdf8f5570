package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of these types.
var GroupVersion = schema.GroupVersion{Group: "backupd.meshbackup.io", Version: "v1alpha1"}

// Resource names, as the apiserver serves them (and RBAC rules name them).
const (
	BackupRepositoryResource = "backuprepositories"
	BackupPolicyResource     = "backuppolicies"
)

// AddToScheme adds the types of this package to a scheme (a client's, or a
// test's).
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&BackupRepository{}, &BackupRepositoryList{},
		&BackupPolicy{}, &BackupPolicyList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
