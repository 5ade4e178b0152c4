"""What the tests and the bench scripts share: a throwaway project and doit in it, the fast
config (fast.toml), served test sites and browsers, fixtures' builders.

The kits never import bench/; bench scripts reach the tests only through here.
"""
