// The built-in tier policy as a loadable policy: `v2p serve --policy libv2p_tier_policy.so`.
#include "policy/tier/tier_policy.hpp"

V2P_POLICY(v2p::tier::TierPolicy)
