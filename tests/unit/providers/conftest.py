"""EC2 on moto's standalone server for the aws driver's tests: the fixtures live in
`nodecluster.testing.ec2`, so the end-to-end suite can share them."""

from nodecluster.testing.ec2 import ec2, moto_server

__all__ = ["ec2", "moto_server"]
