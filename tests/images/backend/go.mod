module gatehouse.dev/tests/images/backend

go 1.24
