# nothing but a comment
node_name = "fw1"
