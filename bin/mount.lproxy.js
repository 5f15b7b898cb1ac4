#!/usr/bin/env node
import '../dist/cli/mounthelper.js'
