//! How many layers to put on a GPU after that many did not fit there: one rule for the
//! two places a GPU runs out of memory. The engine's load (llama.cpp could not
//! allocate the weights, the cache or the buffers) and the supervisor's restart (a
//! worker died of it mid-reply) both ask here, so they cannot drift apart.

/// Fewer layers than `failed`: the fit planner's answer for the device's memory now
/// (`planned`, when there is one) if it is smaller, else half as many. Repeated, it
/// reaches 0, which means the CPU.
pub fn fewer_gpu_layers(failed: u32, planned: Option<u32>) -> u32 {
    let half = failed / 2;
    planned.map_or(half, |planned| planned.min(half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_tries_fewer_layers_down_to_the_cpu() {
        let mut tried = vec![31];
        while let Some(&last) = tried.last().filter(|&&n| n > 0) {
            tried.push(fewer_gpu_layers(last, None));
        }
        assert_eq!(tried, [31, 15, 7, 3, 1, 0]);
    }

    #[test]
    fn the_planner_s_answer_counts_only_when_it_is_fewer() {
        assert_eq!(fewer_gpu_layers(31, Some(12)), 12, "the planner knows the free memory");
        assert_eq!(fewer_gpu_layers(12, Some(12)), 6, "never as many as failed");
        assert_eq!(fewer_gpu_layers(1, Some(40)), 0);
        assert_eq!(fewer_gpu_layers(0, Some(3)), 0);
    }
}
