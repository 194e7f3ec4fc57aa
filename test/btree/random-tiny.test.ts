/** 100,000 random operations on the tiny btree, on an xfile and on a device, against a model. */
import { cases, runCase } from '../lib/random-case';

runCase(cases.tiny!);
