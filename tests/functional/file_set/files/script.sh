#!/bin/sh
echo "a script, copied as it is: {{ not templated }}"
